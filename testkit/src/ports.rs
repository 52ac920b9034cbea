//! Loopback ports for servers a test starts later (a host process, a restarted host).
//!
//! A port taken from the kernel by binding `127.0.0.1:0` and closed again lies in the ephemeral
//! range, where every outbound connection also takes its local port: while the tests, the
//! simulators and `switchyard connector test` beside them open thousands of loopback
//! connections, one of them can take the port before the host binds it ("Address already in
//! use", seen once in a whole run). So the port is picked at random below that range, where only
//! listeners bind, and checked free.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

/// Ports tried below the ephemeral range before falling back to the kernel's choice.
const TRIES: usize = 64;
/// The lowest port picked: above the well-known and most registered services' ports.
pub const LOWEST: u16 = 20_000;

/// A loopback address free now, below the ephemeral range when the machine leaves room there.
pub fn free_loopback_addr() -> std::io::Result<SocketAddr> {
    let ephemeral_from = ephemeral_from();
    if ephemeral_from > LOWEST + 1_000 {
        let span = u32::from(ephemeral_from - LOWEST);
        for _ in 0..TRIES {
            let random = uuid::Uuid::new_v4().as_u128() as u32;
            let port = LOWEST + (random % span) as u16;
            if let Ok(l) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                return l.local_addr();
            }
        }
    }
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()
}

/// The first port of the kernel's ephemeral range (Linux's default when unreadable).
pub fn ephemeral_from() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
}
