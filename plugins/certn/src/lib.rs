//! Switchyard connector for Certn background checks (contract `switchyard:connector@0.2.1`, on
//! the SDK crate `switchyard-connector`).
//!
//! The operations are in [`connector`], written against the SDK's `Host` (unit-tested natively
//! with `FakeHost`); the pure parts are in [`api`] (the invite and the lookup by reference),
//! [`callback`] (webhook bodies, statuses) and [`package`] (which package a request uses).
//! Signatures are verified through the host's `crypto` import. `export_connector!` below is the
//! component glue.

pub mod api;
pub mod callback;
pub mod connector;
pub mod package;

// The component glue (wasm32 only): `Guest` calling `connector`'s functions with `WasmHost`.
switchyard_connector::export_connector!(connector);
