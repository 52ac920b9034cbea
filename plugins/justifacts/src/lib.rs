//! Switchyard connector for Justifacts background checks (contract
//! `switchyard:connector@0.2.1`, on the SDK crate `switchyard-connector`).
//!
//! Justifacts publishes no API documentation, so the protocol (orders endpoint, auth, lookup by
//! `client_order_ref`, callback signature) is switchyard's own design, implemented identically by
//! the simulator in `sim/src/justifacts.rs`; see [`order`] and [`callback`].
//!
//! The operations are in [`connector`], written against the SDK's `Host` (unit-tested natively
//! with `FakeHost`); the decisions live in plain modules ([`package`], [`plan`], [`order`],
//! [`callback`], [`labels`]). `export_connector!` below is the component glue.

pub mod callback;
pub mod connector;
pub mod labels;
pub mod order;
pub mod package;
pub mod plan;

// The component glue (wasm32 only): `Guest` calling `connector`'s functions with `WasmHost`.
switchyard_connector::export_connector!(connector);
