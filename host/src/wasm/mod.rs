//! The WebAssembly side: everything that loads, checks, sandboxes and calls connector components.
//!
//! - [`runtime`]: the wasmtime engine, per-call sandbox (CPU deadline, memory cap), host imports,
//!   the contract-version check and the generated bindings.
//! - [`types`]: the host-neutral connector types (manifest, statuses, requests, call errors).
//! - [`connector`]: the host's typed view of a loaded connector and its calls.
//! - [`registry`]: every loaded version per connector; the serving one behind an atomic swap;
//!   the versions the database names that this host cannot serve yet (tried again later).
//! - [`deploy`]: validate, keep, activate, roll back and remove connector versions, one change
//!   at a time per host, each stored before it is served.
//! - [`cache`]: the on-disk compiled-code cache.
//! - [`harness`]: `switchyard connector test`, the offline scenario harness.
//! - [`inspect`]: `switchyard connector validate|inspect`, offline.
//! - [`watch`]: `serve --watch`, deploys files dropped into the connectors directory.
//! - [`policy`]: outbound policy — approved hosts and ports, resolved addresses checked.
//! - [`quota`]: byte and rate bounds on what a connector makes the host hold.
//! - [`pool`]: the dedicated runtime guest code runs on, with bounded concurrency.

pub mod cache;
pub mod connector;
pub mod deploy;
pub mod harness;
pub mod inspect;
pub mod policy;
pub mod pool;
pub mod quota;
pub mod registry;
pub mod runtime;
pub mod types;
pub mod watch;
