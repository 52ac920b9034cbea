//! The simulators' tests as one test binary (one link, their shared generic code compiled once):
//! one module per simulator, over real HTTP on loopback ports.
//! Run one with `cargo test --release -p switchyard-sim --test sims -- <module>::`.

mod canditech;
mod certn;
mod common;
mod justifacts;
mod lever;
