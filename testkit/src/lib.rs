//! The test kit of switchyard: what the demo, the end-to-end tests (`tests/`) and the benchmark
//! share, kept out of the `switchyard` binary (which links neither the simulators nor `wat`).
//!
//! Modules:
//! - [`stack`]: [`Stack`], the Lever/Certn simulators (optionally Justifacts, Canditech, Gem) and
//!   a host on loopback, wired the way an operator would wire them; the ids and stages it uses.
//! - [`demo`]: the demo the `switchyard-demo` binary (and `scripts/demo.sh`) runs on a stack, one
//!   module per seed flow.
//! - [`lever_oauth`]: the host's Lever OAuth app in the Lever simulator, and the operator's
//!   browser doing the connect dance.
//! - [`pg`]: a new PostgreSQL database per test on the test cluster (`scripts/pg.sh`).
//! - [`cluster`]: [`Cluster`], several `switchyard serve` processes on one PostgreSQL database
//!   behind a loopback round-robin load balancer, the simulators wired to it; kill -9, restart.
//! - [`bench`]: instantiate + call of a connector through the host's call path, against
//!   wasmtime's floor (an empty component) on the same engine. Only with the `bench` feature
//!   (the benchmark's build): the test command compiles neither it nor `wat`.

#[cfg(feature = "bench")]
pub mod bench;
pub mod cluster;
pub mod demo;
pub mod lever_oauth;
pub mod pg;
pub mod ports;
pub mod stack;

pub use cluster::Cluster;
pub use stack::{
    wait_for, CanditechCustomer, CanditechSetup, GemSetup, GemSide, JustifactsCustomer, Stack,
    StackOptions, CANDITECH, CANDITECH_STAGE, CERTN, GEM, JUSTIFACTS, PYTHON_ASSESSMENT,
    PYTHON_POSTING, TRIGGER,
};
