//! switchyard: a host that runs screening-vendor connectors as sandboxed WebAssembly components
//! and wires them to applicant tracking systems. See ARCHITECTURE.md for the map.

pub mod admin;
pub mod app;
pub mod cache;
pub mod clock;
pub mod config;
pub mod connector;
pub mod demo;
pub mod deploy;
pub mod flow;
pub mod gem;
pub mod inspect;
pub mod integrations;
pub mod lever;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod store;
pub mod store_admin;
pub mod timeline;
pub mod watch;
pub mod worker;

pub use app::{start, start_on, RunningHost};
pub use config::Config;
