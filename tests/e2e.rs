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

/// A port the test kit picks for a server started later (a host process, a restart) is free and
/// lies below the kernel's ephemeral range, where outbound connections cannot take it meanwhile.
#[test]
fn a_port_for_a_later_server_is_free_and_below_the_ephemeral_range() {
    use switchyard_testkit::ports::{ephemeral_from, free_loopback_addr, LOWEST};
    let addr = free_loopback_addr().expect("a free port");
    assert!(addr.ip().is_loopback());
    if ephemeral_from() > LOWEST + 1_000 {
        assert!((LOWEST..ephemeral_from()).contains(&addr.port()), "{addr}");
    }
    std::net::TcpListener::bind(addr).expect("still free");
}
