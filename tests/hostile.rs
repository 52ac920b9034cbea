//! A hostile connector (`plugins/hostile`) run through `switchyard serve` (a separate process, so
//! its memory can be read from /proc) beside a well-behaved Certn integration: every attack on the
//! host's memory, threads, storage, logs and replies is contained with a recorded reason, the
//! host's RSS stays bounded, and `/healthz` and the neighbour keep answering while hostile calls
//! spin. Plus a property test of the intake routes and the signature parsers.
//!
//! Timing bounds here are deliberately generous (the machine is shared); the figures are printed
//! (`--nocapture`) for the record, not asserted tightly.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard::store::{Event, EventState, Store};
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::{eventually, lever_of, options};

const LONG: Duration = Duration::from_secs(60);
const HOSTILE: &str = "hostile";
const STAGE: &str = "Hostile Stage";
/// The guest deadline of the served host.
const DEADLINE_MS: u64 = 5_000;
/// The guest memory cap of the served host.
const MEMORY_MB: u64 = 48;

/// A loopback server whose every answer is an endless (well, 1 GiB) chunked body.
fn start_bomb() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || bomb(stream));
        }
    });
    addr
}

fn bomb(mut stream: std::net::TcpStream) {
    let mut head = [0u8; 4096];
    let _ = stream.read(&mut head);
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n");
    let chunk = vec![b'z'; 64 * 1024];
    let frame = [
        format!("{:x}\r\n", chunk.len()).into_bytes(),
        chunk,
        b"\r\n".to_vec(),
    ]
    .concat();
    // 1 GiB at most: bounded even if nobody stops reading.
    for _ in 0..(1 << 14) {
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
}

/// `host:port` of a base URL.
fn host_port(url: &str) -> String {
    let u = reqwest::Url::parse(url).unwrap();
    format!(
        "{}:{}",
        u.host_str().unwrap(),
        u.port_or_known_default().unwrap()
    )
}

/// The config of the served host: Certn (the neighbour) and the hostile connector.
fn write_config(stack: &Stack, bomb: SocketAddr, dir: &Path) -> PathBuf {
    let c = &stack.config;
    let certn = c.integrations.iter().find(|i| i.id == CERTN).unwrap();
    let hostile = c.integrations.iter().find(|i| i.id == HOSTILE).unwrap();
    let (lever, hostile_lever) = (lever_of(certn), lever_of(hostile));
    let certn_host = host_port(&stack.certn.api_base());
    let text = format!(
        r#"
[server]
listen = "{listen}"
[storage]
path = "{db}"
[runtime]
connectors_dir = "{connectors}"
timeout_ms = {DEADLINE_MS}
memory_mb = {MEMORY_MB}
approved_hosts = ["{certn_host}", "{bomb}"]
[worker]
retry_base_ms = 100
retry_max_ms = 200
max_attempts = 2
# The attacks are vendor failures in a row: with the default breaker (5) the integration would
# pause for `breaker_open_secs` and this test would time the breaker, not the sandbox.
breaker_failures = 1000
[[integrations]]
id = "{CERTN}"
connector = "certn"
allowed_hosts = ["{certn_host}"]
allow_loopback = true
[integrations.ats]
kind = "lever"
api_base = "{lever_base}"
api_key = "{lever_key}"
signature_token = "{token}"
trigger_stage = "{TRIGGER}"
[integrations.settings]
api-base = "{certn_base}"
[integrations.secrets]
api-key = "{certn_key}"
webhook-secret = "{certn_secret}"
[[integrations.packages]]
name = "Basic"
default = true
params = {{ checks = "criminal_record_check" }}
[[integrations]]
id = "{HOSTILE}"
connector = "hostile"
allowed_hosts = ["{bomb}"]
allow_loopback = true
[integrations.ats]
kind = "lever"
api_base = "{lever_base}"
api_key = "{lever_key}"
signature_token = "{hostile_token}"
trigger_stage = "{STAGE}"
[integrations.settings]
url = "http://{bomb}/endless"
"#,
        listen = c.server.listen,
        db = c.storage.path.display(),
        connectors = c.runtime.connectors_dir.display(),
        lever_base = lever.api_base,
        lever_key = lever.api_key.as_ref().expect("an API key").expose(),
        token = lever.signature_token.expose(),
        hostile_token = hostile_lever.signature_token.expose(),
        certn_base = stack.certn.api_base(),
        certn_key = stack.certn.api_key(),
        certn_secret = stack.certn.webhook_secret(),
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The `switchyard` binary built beside this test (`cargo build --release --bins`).
fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap()
        .join("switchyard");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// A served host, killed when dropped.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn serve(config: &Path, addr: SocketAddr) -> Served {
    // Its errors beside its config, to read when the test fails.
    let log = std::fs::File::create(config.with_extension("log")).unwrap();
    let child = Command::new(binary())
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let served = Served(child);
    // Until `/healthz` answers, not merely until the port accepts: the listener is bound before
    // the connectors load, and a webhook sent meanwhile waits for them (the simulator's first
    // delivery timed out at 5 s while a loaded machine compiled the hostile connector).
    let url = format!("http://{addr}/healthz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = reqwest::get(&url).await;
        if answer.is_ok_and(|r| r.status() == 200) {
            return served;
        }
        assert!(
            Instant::now() < deadline,
            "the host did not come up in 60 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `VmRSS` and `VmHWM` (peak) of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn events(db: &Path, integration: &str) -> Vec<Event> {
    Store::open(db)
        .and_then(|s| s.events(integration, 1000))
        .unwrap_or_default()
}

/// The hostile stage-change event of the candidate named `attack`, once finished (or waiting).
async fn finished_event(
    db: &Path,
    opps: &std::collections::HashMap<&str, String>,
    attack: &str,
) -> Event {
    let opp = &opps[attack];
    eventually(&format!("the {attack} event finishes"), LONG, || {
        events(db, HOSTILE).into_iter().find(|e| {
            e.kind == "lever.stage_change"
                && e.payload.contains(opp.as_str())
                && matches!(
                    e.state,
                    EventState::Dead | EventState::Done | EventState::Waiting
                )
        })
    })
    .await
}

async fn metric(addr: SocketAddr, limit: &str) -> u64 {
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let key =
        format!("switchyard_sandbox_limits_total{{connector=\"hostile\",limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

/// Moves a new Certn candidate to the trigger stage; the time until Certn's invitation shows as a
/// tag, and until the screening is complete.
async fn neighbour_round(stack: &Stack, name: &str) -> (Duration, Duration) {
    let opp = stack.candidate(name, Some("n@example.com"), &[], None);
    let started = Instant::now();
    assert_eq!(stack.move_to(&opp, TRIGGER).await.unwrap(), 200);
    stack
        .wait_for(&opp, LONG, |o| {
            o.tags.iter().any(|t| t.starts_with("CERTN - "))
        })
        .await
        .unwrap();
    let pending = started.elapsed();
    stack
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .unwrap();
    (pending, started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hostile_connector_is_contained_beside_a_working_neighbour() {
    let dir = switchyard_tests::scratch("hostile");
    let bomb = start_bomb();
    let stack = Stack::prepare(options("hostile", |o| {
        o.extra = vec![(HOSTILE.into(), "hostile".into(), STAGE.into())];
        o.data_dir = dir.to_path_buf();
    }))
    .await
    .unwrap();
    let config = write_config(&stack, bomb, &dir);
    let db = stack.config.storage.path.clone();
    let addr = stack.addr;
    let host = serve(&config, addr).await;
    let pid = host.0.id();
    let client = reqwest::Client::new();

    // Baseline: the neighbour alone.
    let (base_pending, base_complete) = neighbour_round(&stack, "Baseline").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle, _) = rss_mib(pid);

    // 1. Attacks through start-screening: bytes into the host.
    let attacks = [
        "big-response",
        "big-request",
        "big-log",
        "log-flood",
        "state-flood",
        "state-big",
        "big-error",
        "aliased",
    ];
    let mut opps = std::collections::HashMap::new();
    for attack in attacks {
        let opp = stack.candidate(attack, Some("h@example.com"), &[], None);
        stack.move_to(&opp, STAGE).await.unwrap();
        opps.insert(attack, opp);
    }
    let reason = |e: &Event| e.last_error.clone().unwrap_or_default();
    let e = finished_event(&db, &opps, "big-response").await;
    assert_eq!(e.state, EventState::Dead);
    assert!(reason(&e).contains("outbound_response_bytes"), "{e:?}");
    let e = finished_event(&db, &opps, "big-request").await;
    assert!(reason(&e).contains("outbound_request_bytes"), "{e:?}");
    // A full quota is not retried in a loop nor dead-lettered: the event waits for room.
    let e = finished_event(&db, &opps, "state-flood").await;
    assert_eq!(e.state, EventState::Waiting);
    assert_eq!(e.waiting_for, Some(switchyard::store::WaitFor::Quota));
    assert!(reason(&e).contains("state_total_bytes"), "{e:?}");
    let e = finished_event(&db, &opps, "state-big").await;
    assert!(reason(&e).contains("state_value_bytes"), "{e:?}");
    let e = finished_event(&db, &opps, "big-error").await;
    assert!(
        reason(&e).len() < 4096 && reason(&e).contains("bytes cut"),
        "{}",
        reason(&e).len()
    );
    // Five strings over one 40 MiB buffer: refused before the host copies them, well within the
    // deadline (the copy runs in host code, where the epoch deadline does not reach).
    let e = finished_event(&db, &opps, "aliased").await;
    assert_eq!(e.state, EventState::Dead, "{e:?}");
    assert!(reason(&e).contains("runtime.limits.lift_bytes"), "{e:?}");
    let attempts = Store::open(&db)
        .and_then(|s| s.event_detail(e.id))
        .ok()
        .flatten()
        .map(|d| d.attempts_history)
        .unwrap_or_default();
    assert!(!attempts.is_empty(), "the attempts are recorded");
    for a in &attempts {
        assert!(
            a.took_ms < DEADLINE_MS as i64 + 1_000,
            "an attempt took {} ms past the {DEADLINE_MS} ms deadline",
            a.took_ms
        );
    }
    let e = finished_event(&db, &opps, "big-log").await;
    assert_eq!(
        e.state,
        EventState::Done,
        "a long log line is cut, not fatal"
    );
    let e = finished_event(&db, &opps, "log-flood").await;
    assert_eq!(
        e.state,
        EventState::Done,
        "a log flood is dropped, not fatal"
    );
    assert!(metric(addr, "log_message_bytes").await >= 1);
    assert!(metric(addr, "log_lines_per_call").await >= 199_000);
    assert!(metric(addr, "outbound_response_bytes").await >= 1);
    assert!(metric(addr, "state_total_bytes").await >= 1);
    assert!(metric(addr, "lift_bytes").await >= 1);
    let (after_bytes, peak_bytes) = rss_mib(pid);

    // 2. Attacks through the vendor callback: replies and updates.
    let callback = |body: &'static str| {
        client
            .post(format!("http://{addr}/hooks/{HOSTILE}/vendor"))
            .body(body)
            .send()
    };
    let flood = callback("updates").await.unwrap();
    assert_eq!(flood.status(), 500);
    assert!(
        flood.text().await.unwrap().contains("callback_updates"),
        "refused with the limit's name"
    );
    assert!(
        !events(&db, HOSTILE)
            .iter()
            .any(|e| e.kind == "vendor.status"),
        "not one of the 100,000 updates stored"
    );
    let recorded = events(&db, HOSTILE);
    assert!(
        recorded
            .iter()
            .any(|e| e.kind == "vendor.callback" && reason(e).contains("100000 status updates")),
        "the refusal is recorded"
    );
    let headers = callback("headers").await.unwrap();
    assert_eq!(headers.status(), 200);
    let h = headers.headers().clone();
    assert!(h.len() <= 16 + 2, "{} headers", h.len()); // + date, content-length
    for framing in [
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "set-cookie",
    ] {
        assert!(!h.contains_key(framing), "{framing} forwarded");
    }
    assert_eq!(h["content-length"], "2", "the host's own framing");
    assert_eq!(h["content-type"], "text/plain");
    assert_eq!(headers.text().await.unwrap(), "ok");
    let big = callback("big-body").await.unwrap();
    assert_eq!(big.status(), 200);
    assert!(
        big.bytes().await.unwrap().is_empty(),
        "oversized body replaced"
    );
    assert!(metric(addr, "reply_headers").await >= 1);

    // 3. Four callbacks spin to their deadline; /healthz and the neighbour carry on.
    let spinning = Arc::new(AtomicBool::new(true));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let url = format!("http://{addr}/hooks/{HOSTILE}/vendor");
            tokio::spawn(async move {
                let started = Instant::now();
                let status = reqwest::Client::new()
                    .post(url)
                    .body("spin")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                (status, started.elapsed())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let health_client = reqwest::Client::new();
    let probe = {
        let spinning = spinning.clone();
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while spinning.load(Ordering::Relaxed) && samples.len() < 400 {
                let t = Instant::now();
                let r = health_client
                    .get(format!("http://{addr}/healthz"))
                    .send()
                    .await;
                assert_eq!(r.map(|r| r.status().as_u16()).unwrap_or(0), 200);
                samples.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            samples
        })
    };
    let (spin_pending, spin_complete) = neighbour_round(&stack, "During the spin").await;
    let mut spun = Vec::new();
    for s in spinners {
        spun.push(s.await.unwrap());
    }
    spinning.store(false, Ordering::Relaxed);
    let mut health = probe.await.unwrap();
    let (_, peak) = rss_mib(pid);
    let (health_p50, health_p99) = (percentile(&mut health, 0.5), percentile(&mut health, 0.99));
    let health_max = *health.last().unwrap();
    println!(
        "figures: RSS idle {idle:.1} MiB, after byte attacks {after_bytes:.1} MiB (peak {peak_bytes:.1}), peak overall {peak:.1} MiB; \
         /healthz while 4 guests spin: {} samples, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
         neighbour to first tag {:.0} ms / complete {:.0} ms (alone: {:.0} / {:.0} ms); spinners answered {:?}",
        health.len(),
        health_p50.as_secs_f64() * 1e3,
        health_p99.as_secs_f64() * 1e3,
        health_max.as_secs_f64() * 1e3,
        spin_pending.as_secs_f64() * 1e3,
        spin_complete.as_secs_f64() * 1e3,
        base_pending.as_secs_f64() * 1e3,
        base_complete.as_secs_f64() * 1e3,
        spun
    );
    assert!(spun.iter().all(|(status, _)| *status == 500), "{spun:?}");
    let deadlines = events(&db, HOSTILE)
        .into_iter()
        .filter(|e| e.kind == "vendor.callback" && reason(e).contains("deadline"))
        .count();
    assert_eq!(
        deadlines, 4,
        "each spinning callback recorded with its reason"
    );
    assert!(health.len() >= 20, "probed throughout");
    assert!(
        health_max < Duration::from_secs(1),
        "/healthz stalled: {health_max:?}"
    );
    // Generous: the neighbour is not held for the spinners' 5 s deadline.
    assert!(
        spin_pending < Duration::from_millis(DEADLINE_MS),
        "{spin_pending:?}"
    );

    // Memory: under 2× idle plus what the caps allow the hostile calls to hold at once (4 slots,
    // each a guest memory, the host's copy of what it hands over, and one response body).
    let caps = 4.0 * (2.0 * MEMORY_MB as f64 + 4.0);
    assert!(
        peak < 2.0 * idle + caps,
        "peak RSS {peak:.1} MiB over 2 × {idle:.1} + {caps} MiB"
    );
    drop(host);
}

/// Property test of the intake: random bodies, signatures and paths never get a 5xx, never crash
/// the host, and a rejected request stores nothing. Also the signature parsers on random input.
#[test]
fn fuzzed_intake_never_fails_open_and_stores_nothing_it_rejects() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    let rt = tokio::runtime::Runtime::new().unwrap();
    let stack = rt
        .block_on(Stack::start(options("fuzz", |o| {
            o.gem = Some(switchyard_testkit::GemSetup::default());
        })))
        .unwrap();
    let store = stack.host().app.store.clone();
    let integrations = [CERTN, switchyard_testkit::GEM];
    let count = |store: &Store| -> usize {
        integrations
            .iter()
            .map(|i| store.events(i, 100_000).map(|e| e.len()).unwrap_or(0))
            .sum()
    };
    let base = format!("http://{}", stack.addr);
    let client = reqwest::Client::new();
    let token = lever_of(&stack.config.integrations[0])
        .signature_token
        .expose()
        .to_string();

    // A well-formed Lever webhook, signed or not, with fields drawn at random.
    let lever_body = (
        "[a-z0-9]{0,12}",
        any::<i64>(),
        prop_oneof![
            Just("candidateStageChange".to_string()),
            Just("candidateHired".to_string()),
            "[a-zA-Z]{0,10}"
        ],
        any::<bool>(),
        "[ -~]{0,40}",
    )
        .prop_map(move |(tok, at, event, signed, junk)| {
            let at = if signed {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as i64)
            } else {
                at
            };
            let sig = if signed {
                switchyard::ats::lever::signature::sign(&token, &tok, at)
            } else {
                junk.clone()
            };
            serde_json::json!({
                "token": tok, "triggeredAt": at, "signature": sig, "event": event,
                "data": {"opportunityId": junk, "toStageId": "x", "fromStageId": null}
            })
            .to_string()
            .into_bytes()
        });
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        lever_body,
        "[ -~]{0,512}".prop_map(String::into_bytes),
    ];
    let route = prop_oneof![
        Just(format!("/hooks/{CERTN}/lever")),
        Just(format!("/hooks/{CERTN}/vendor")),
        Just(format!("/hooks/{CERTN}/vendor/x/y")),
        Just(format!("/hooks/{}/vendor", switchyard_testkit::GEM)),
        Just(format!("/gem/{}/screenings", switchyard_testkit::GEM)),
        Just(format!("/gem/{}/packages", switchyard_testkit::GEM)),
        "/hooks/[a-z-]{1,12}/[a-z]{1,8}",
    ];
    let header = prop_oneof![
        Just(None),
        "[ -~]{0,80}".prop_map(Some),
        Just(Some("sy_000000000000_x".to_string())),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 600,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&(route, body, header), |(route, body, header)| {
            let before = count(&store);
            let status = rt.block_on(async {
                let mut req = client.post(format!("{base}{route}")).body(body.clone());
                if let Some(h) = &header {
                    req = req
                        .header("x-api-key", h.as_str())
                        .header("certn-signature", h.as_str())
                        .header("webhook-signature", h.as_str());
                }
                req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
            });
            prop_assert!(status != 0, "connection failed: the host crashed?");
            prop_assert!(status < 500, "{route} answered {status}");
            if status >= 400 {
                prop_assert_eq!(
                    count(&store),
                    before,
                    "{} stored something ({})",
                    route,
                    status
                );
            }
            Ok(())
        })
        .unwrap();

    // The parsers alone, on arbitrary text: no panic, never a false "valid".
    let mut runner = TestRunner::new(Config {
        cases: 2000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(
            &(
                ".{0,64}",
                ".{0,64}",
                any::<i64>(),
                ".{0,128}",
                any::<Vec<u8>>(),
            ),
            |(key, tok, at, sig, body)| {
                prop_assert!(!switchyard::ats::lever::signature::verify(
                    &key, &tok, at, &sig
                ));
                prop_assert!(!switchyard::ats::gem::signature::verify(
                    key.as_bytes(),
                    &sig,
                    &tok,
                    at,
                    &body
                ));
                let _ = switchyard::ats::lever::webhook::verify(&body, &key, 900, at);
                Ok(())
            },
        )
        .unwrap();
    let health = rt
        .block_on(reqwest::get(format!("{base}/healthz")))
        .map(|r| r.status().as_u16());
    assert_eq!(health.ok(), Some(200));
    rt.block_on(async move {
        if let Some(host) = stack.host {
            host.shutdown().await;
        }
    });
}
