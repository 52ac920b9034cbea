//! The Rust SDK for switchyard connectors (contract `switchyard:connector@0.2.1`).
//!
//! A connector is a WebAssembly component that knows one screening vendor. This crate gives a
//! Rust connector everything but the vendor knowledge:
//!
//! - the **bindings** of `wit/connector.wit`, generated here (the connector crate needs no
//!   wit-bindgen of its own): every contract type is re-exported at the crate root
//!   ([`Manifest`], [`ScreeningRequest`], [`Status`], ...), with constructors and builders in
//!   [`types`];
//! - the [`export!`] macro, which turns a type implementing [`Guest`] into the component's
//!   `screening` export;
//! - the [`Host`] trait: the host's imports (`outbound-http`, `config`, `state`, `log`, `crypto`)
//!   plus the wall clock as one value. [`WasmHost`] calls the real imports inside a component;
//!   `testing::FakeHost` (feature `testing`) replaces them in native unit tests. Write the logic
//!   as functions taking `host: &impl Host`, and call them from a thin [`Guest`] implementation;
//! - typed helpers: [`http`] (a request builder with JSON, and failures mapped to the contract's
//!   [`ConnectorError`] kinds), [`signature`] (callback signatures verified through the host's
//!   `crypto` import), [`state`] (typed JSON values), [`config`] (required settings and secrets),
//!   [`idempotency`] (the intent-before-call pattern below), [`lookup`] (step 3 for vendors that
//!   cannot be searched by our reference) and [`text`].
//!
//! [`export_connector!`] writes that glue when the four operations are functions of one module
//! (`export_connector!(connector)`); by hand it is:
//!
//! ```ignore
//! // src/lib.rs of a connector crate (crate-type = ["cdylib"], built for wasm32-wasip2)
//! pub mod connector; // fn start_screening(host: &impl Host, request: &ScreeningRequest) -> ...
//!
//! #[cfg(target_arch = "wasm32")]
//! mod component {
//!     use switchyard_connector::{Guest, WasmHost, /* types */};
//!     struct Component;
//!     switchyard_connector::export!(Component);
//!     impl Guest for Component {
//!         fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
//!             crate::connector::start_screening(&WasmHost, &request)
//!         }
//!         // manifest, list_packages, handle_callback likewise
//!     }
//! }
//! ```
//!
//! # Idempotency: one invitation per screening, whatever the vendor does
//!
//! `screening-request.idempotency-key` is stable across retries of one request. The host records
//! the key with the order `start-screening` returns and never calls it again for that key; until
//! then it retries a call that failed, timed out or was cut short by a crash, so a connector must
//! never invite twice for one key — even when the vendor ignores idempotency keys, and even when
//! the vendor placed the order but its answer was lost. [`idempotency::start_once`] implements the
//! pattern the contract prescribes, with screening-scoped state
//! (`state.set-for-screening`, which the host drops when it records the order):
//!
//! 1. `order:<key>` in `state` → an earlier attempt placed the order but the host did not record
//!    it yet: return it, call nobody.
//! 2. No intent yet → record `intent:<key>` for the screening (durable when the call returns)
//!    **before** the vendor call, then invite.
//! 3. An intent without an order → an earlier attempt may have placed the order without
//!    recording it (a crash, a timeout, a lost answer): **look the order up at the vendor by our
//!    reference** (the idempotency key, sent with every invitation), and invite only when the
//!    vendor has none. A vendor without such a lookup: [`lookup`] finds the order by a field the
//!    vendor stores and lists by, or by email and time window; with no way at all,
//!    [`lookup::none`] makes the host hold the event for an operator rather than invite blindly.
//! 4. Once the vendor answered (or the lookup found the order) → record `order:<key>` for the
//!    screening and remove the intent. The host drops `order:<key>` when it records the order:
//!    the connector's state stays the same size however many screenings run.
//!
//! An invitation that certainly created nothing (the vendor refused it, or it never left) removes
//! the intent this attempt recorded; one whose fate is unknown (timeout, 5xx) keeps it, so the
//! retry looks up first. Pass the key to the vendor as an `Idempotency-Key` header too when its
//! API takes one: the two defences are independent.
//!
//! # Testing natively
//!
//! With the `testing` feature (as a dev-dependency), `testing::FakeHost` scripts vendor HTTP
//! exchanges, keeps `state` in memory, computes `crypto` natively and reads a fixed clock, so
//! `cargo test --target x86_64-unknown-linux-gnu` runs a connector's logic without a host.
#![warn(missing_docs)]

pub mod bindings;
pub mod config;
mod host;
pub mod http;
pub mod idempotency;
pub mod lookup;
mod macros;
pub mod signature;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;
pub mod types;

/// Exports a type implementing [`Guest`] as the component's `screening` export:
/// `switchyard_connector::export!(MyConnector);` (in the connector crate, at most once).
pub use bindings::export;
pub use bindings::exports::switchyard::connector::screening::Guest;
pub use bindings::switchyard::connector::crypto::Encoding;
pub use bindings::switchyard::connector::log::Level;
pub use bindings::switchyard::connector::outbound_http::{HttpError, OutgoingRequest};
pub use bindings::switchyard::connector::types::{
    CallbackResult, Candidate, ConfigField, ConnectorError, HttpRequest, HttpResponse, Manifest,
    Note, Package, ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status, StatusUpdate,
};
pub use host::{Host, WasmHost};

/// The contract version these bindings implement (`switchyard:connector@0.2.1`).
pub const CONTRACT_VERSION: &str = "0.2.1";
