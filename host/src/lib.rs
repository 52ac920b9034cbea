//! switchyard: a host that runs screening-vendor connectors as sandboxed WebAssembly components
//! and wires them to applicant tracking systems. See ARCHITECTURE.md for the map.

pub mod app;
pub mod clock;
pub mod config;
pub mod connector;
pub mod demo;
pub mod flow;
pub mod gem;
pub mod lever;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod store;
pub mod timeline;
pub mod worker;

pub use app::{start, start_on, RunningHost};
pub use config::Config;
