//! Every end-to-end test but `lever_oauth.rs`, as one test binary: one module per area, each
//! starting its own stacks (simulators + host on loopback ports, scratch data dirs) or
//! `switchyard serve` children, so that nothing is shared between tests but the process.
//! Run one area with `cargo test --release -p switchyard-tests --test e2e -- <module>::`.

mod admin;
mod authoring;
mod authorized_app;
mod canditech;
mod cluster;
mod console;
mod console_data;
mod console_wizard;
mod contract;
mod example_config;
mod faults;
mod gem;
mod harness;
mod hostile;
mod idempotency;
mod intake;
mod isolation;
mod justifacts;
mod lever_grants;
mod many_integrations;
mod multihost;
mod neighbours;
mod polyglot;
mod postgres;
mod quota;
mod retention;
mod serve_config;
mod shared;
mod spine;
