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
//! `handle-callback` panics when the body is `trap`. A callback with an `x-misbehave-signature`
//! header is checked with the host's `crypto` import (contract 0.2): the header must be the hex
//! HMAC-SHA256 of the body under the integration's `webhook-secret`; a bad one → 401 and no
//! updates; a good one → 200 whose body is the hex SHA-256 of the request body, and one update
//! marking order `<body>` complete (`MISBEHAVE - Complete`). Anything else → 200, no updates.
//!
//! Built against contract 0.2.0 (`wit/`); its manifest asks for no particular limits, so it runs
//! with the host's defaults (`runtime.memory_mb`), which the isolation tests lower.

wit_bindgen::generate!({ path: "../../wit", world: "connector" });

use std::hint::black_box;
use std::time::{Duration, Instant};

use exports::switchyard::connector::screening::Guest;
use switchyard::connector::config;
use switchyard::connector::crypto::{self, Encoding};
use switchyard::connector::types::{
    CallbackResult, ConfigField, ConnectorError, HttpRequest, HttpResponse, Manifest, Package,
    ResourceNeeds, ScreeningRequest, ScreeningState, Started, Status, StatusUpdate,
};

/// The label of a started screening.
const LABEL_PENDING: &str = "MISBEHAVE - Pending";
/// The label a signed callback sets.
const LABEL_COMPLETE: &str = "MISBEHAVE - Complete";
/// The header of a signed callback.
const SIGNATURE_HEADER: &str = "x-misbehave-signature";

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
            config_fields: vec![ConfigField {
                key: "webhook-secret".into(),
                description: "Key of the HMAC-SHA256 on signed test callbacks".into(),
                secret: true,
                required: false,
            }],
            outbound_hosts: Vec::new(),
            status_labels: vec![LABEL_PENDING.into(), LABEL_COMPLETE.into()],
            default_trigger_stage: None,
            verdict_labels: Vec::new(),
            limits: ResourceNeeds {
                memory_mib: 0,
                instances: 0,
            },
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
        if let Some((_, signature)) = request.headers.iter().find(|(k, _)| k == SIGNATURE_HEADER) {
            return Ok(signed_callback(&request.body, signature));
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

/// A callback signed with the integration's `webhook-secret`, verified by the host's `crypto`.
fn signed_callback(body: &[u8], signature: &str) -> CallbackResult {
    let secret = config::secret("webhook-secret").unwrap_or_default();
    if !crypto::verify_hmac_sha256(secret.as_bytes(), body, signature, Encoding::Hex) {
        return CallbackResult {
            response: HttpResponse {
                status: 401,
                headers: Vec::new(),
                body: b"bad signature".to_vec(),
            },
            updates: Vec::new(),
        };
    }
    let digest = crypto::encode(&crypto::sha256(body), Encoding::Hex);
    CallbackResult {
        response: HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: digest.into_bytes(),
        },
        updates: vec![StatusUpdate {
            order_ref: String::from_utf8_lossy(body).trim().to_string(),
            status: Status {
                state: ScreeningState::Complete,
                label: LABEL_COMPLETE.into(),
                report_url: None,
                score: None,
                verdict: None,
                note: None,
            },
        }],
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
