//! A connector that misbehaves on request, for the host's isolation tests.
//!
//! `start-screening` picks a behaviour from the candidate's name (trimmed, case-insensitive):
//!
//! | name          | behaviour                                                        |
//! |---------------|------------------------------------------------------------------|
//! | `trap`        | panics (a trap in the component)                                 |
//! | `loop`        | spins forever; only the host's epoch deadline stops it           |
//! | `oom`         | allocates and touches memory until allocation fails (a trap)     |
//! | `slow-<ms>`   | busy-waits that many milliseconds, then succeeds                 |
//! | anything else | succeeds with order `ok-<idempotency key>`, `MISBEHAVE - Pending` |
//!
//! `handle-callback` panics when the body is `trap` and otherwise answers 200 with no updates.

wit_bindgen::generate!({ path: "../../wit/0.1.0", world: "connector" });

use std::hint::black_box;
use std::time::{Duration, Instant};

use exports::switchyard::connector::screening::Guest;
use switchyard::connector::types::{
    CallbackResult, ConnectorError, HttpRequest, HttpResponse, Manifest, Package, ScreeningRequest,
    ScreeningState, Started, Status,
};

/// The only label this connector returns.
const LABEL_PENDING: &str = "MISBEHAVE - Pending";

/// The exported connector.
struct Misbehave;

export!(Misbehave);

/// What the candidate's name asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Trap,
    Loop,
    Oom,
    Slow(u64),
    Succeed,
}

fn behaviour(name: &str) -> Behaviour {
    let name = name.trim().to_ascii_lowercase();
    match name.as_str() {
        "trap" => Behaviour::Trap,
        "loop" => Behaviour::Loop,
        "oom" => Behaviour::Oom,
        other => other
            .strip_prefix("slow-")
            .and_then(|ms| ms.parse().ok())
            .map_or(Behaviour::Succeed, Behaviour::Slow),
    }
}

impl Guest for Misbehave {
    fn manifest() -> Manifest {
        Manifest {
            id: "misbehave".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            display_name: "Misbehaving test connector".into(),
            config_fields: Vec::new(),
            outbound_hosts: Vec::new(),
            status_labels: vec![LABEL_PENDING.into()],
            default_trigger_stage: None,
        }
    }

    fn list_packages() -> Result<Vec<Package>, ConnectorError> {
        Ok(Vec::new())
    }

    fn start_screening(request: ScreeningRequest) -> Result<Started, ConnectorError> {
        match behaviour(&request.candidate.name) {
            Behaviour::Trap => panic!("misbehave: trap requested"),
            Behaviour::Loop => spin_forever(),
            Behaviour::Oom => exhaust_memory(),
            Behaviour::Slow(ms) => busy_wait(Duration::from_millis(ms)),
            Behaviour::Succeed => {}
        }
        Ok(Started {
            order_ref: Some(format!("ok-{}", request.idempotency_key)),
            status: Status {
                state: ScreeningState::Pending,
                label: LABEL_PENDING.into(),
                report_url: None,
                score: None,
                verdict: None,
                note: None,
            },
        })
    }

    fn handle_callback(request: HttpRequest) -> Result<CallbackResult, ConnectorError> {
        if request.body == b"trap" {
            panic!("misbehave: trap requested by callback");
        }
        Ok(CallbackResult {
            response: HttpResponse {
                status: 200,
                headers: Vec::new(),
                body: Vec::new(),
            },
            updates: Vec::new(),
        })
    }
}

/// Pure computation that never yields and never calls the host: only an epoch deadline (or fuel)
/// can interrupt it. `black_box` keeps the optimizer from reasoning the loop away.
fn spin_forever() -> ! {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Grows the heap 1 MiB at a time, writing every byte so the pages are really committed, until
/// `memory.grow` fails; Rust's allocation-failure handler then aborts, which is a trap.
fn exhaust_memory() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // A non-zero fill forces writes (a zeroed allocation could stay untouched).
        let chunk = vec![0xA5u8; 1 << 20];
        hoard.push(black_box(chunk));
    }
}

/// Busy-waits (no sleeping: the point is to burn CPU inside the guest).
fn busy_wait(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        black_box(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviour_from_name() {
        assert_eq!(behaviour("trap"), Behaviour::Trap);
        assert_eq!(behaviour(" LOOP "), Behaviour::Loop);
        assert_eq!(behaviour("oom"), Behaviour::Oom);
        assert_eq!(behaviour("slow-250"), Behaviour::Slow(250));
        assert_eq!(behaviour("slow-x"), Behaviour::Succeed);
        assert_eq!(behaviour("Ada Lovelace"), Behaviour::Succeed);
    }
}
