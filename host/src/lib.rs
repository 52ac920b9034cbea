//! switchyard: a host that runs screening-vendor connectors as sandboxed WebAssembly components
//! and wires them to applicant tracking systems. See ARCHITECTURE.md for the map.
//!
//! The folders follow the architecture:
//! - [`wasm`]: the WebAssembly side — engine and sandbox, contract check, connector registry,
//!   deploy/validate, compiled-code cache, inspect, watch.
//! - [`store`]: durable queue and state (events, orders, notes, kv, operator tables).
//! - [`ats`]: one module per applicant tracking system behind one seam ([`ats::Ats`]).
//! - [`flow`]: what happens to a stored event, and the workers that run it.
//! - [`http`]: the HTTP surface — intake routes, Gem's API, admin.
//! - [`recording`]: what operators see of an event's traffic (masked headers, outbound calls).
//! - [`replay`]: the runner of bulk replay jobs.
//! - [`retention`]: the periodic pass that prunes finished work and old connector versions.
//! - [`shared`]: keeping this host in step with the others on one database (connector
//!   versions, integrations), by polling the shared revisions.
//! - [`run`]: composes the server, workers, watcher and retention pass around the shared
//!   [`app::App`].

pub mod app;
pub mod ats;
pub mod authoring;
pub mod clock;
pub mod config;
pub mod flow;
pub mod http;
pub mod metrics;
pub mod recording;
pub mod replay;
pub mod retention;
pub mod run;
pub mod secret;
pub mod shared;
pub mod store;
pub mod timeline;
pub mod wasm;

pub use config::Config;
pub use run::{start, start_on, RunningHost};
