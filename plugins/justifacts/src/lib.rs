//! Switchyard connector for Justifacts background checks.
//!
//! Written against `wit/connector.wit` alone. Justifacts publishes no API documentation, so the
//! protocol (orders endpoint, auth, callback signature) is switchyard's own design, implemented
//! identically by the simulator in `sim/src/justifacts.rs`; see [`order`] and [`signature`].
//!
//! All decisions live in plain modules ([`package`], [`plan`], [`order`], [`callback`],
//! [`signature`]) with native unit tests; `component.rs` only moves data between them and the
//! WIT imports/exports, and is compiled for wasm32 only.

pub mod callback;
pub mod labels;
pub mod order;
pub mod package;
pub mod plan;
pub mod signature;

#[cfg(target_arch = "wasm32")]
mod component;
