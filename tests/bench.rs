//! Benchmarks of the host's own path, on loopback (not run by the test suite; figures, not
//! pass/fail). Run: `cargo bench -p switchyard-tests --bench host` after `scripts/setup.sh`
//! (and the fixtures build, see `scripts/test.sh`).
//!
//! 1. Start-up: the first start compiles every connector; a restart loads the on-disk cache.
//! 2. Intake and processing: `WEBHOOKS` signed Lever webhooks from 8 concurrent senders into an
//!    integration on the `misbehave` connector (no vendor round trip), so what is measured is
//!    webhook → verify → commit → ack, then worker → connector → Lever write-back.
//! 3. Bulkheads: the fast integration's throughput alone, then while the Certn integration's
//!    vendor is stalled (every call hangs until the connector's deadline) with a backlog.
//! 4. Resume: events held by a run that died (its lock file left behind, leases 5 min long) are
//!    taken back by the next start; time from start to all of them processed.
//! 5. Hot swap: activate / roll back a connector version through the admin API.

#[allow(dead_code)]
mod support_admin;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use support_admin::{connectors_dir, plugin, restart, variant, Admin, Body, TOKEN};
use switchyard::config::Secret;
use switchyard::demo::{Stack, StackOptions};
use switchyard::store::EventState;

const WEBHOOKS: usize = 2_000;
const SENDERS: usize = 8;
const SWAPS: usize = 20;
const STAGE: &str = "Fast Stage";
const FAST: &str = "fast";
const BULKHEAD_MOVES: usize = 600;
const STALLED_BACKLOG: usize = 40;
const RESUMED: usize = 40;

/// Moves `n` new candidates into the fast integration's stage from `SENDERS` senders; returns
/// its processed events/s (first move to the last event done).
async fn fast_run(stack: &Arc<Stack>, n: usize, label: &str) -> anyhow::Result<f64> {
    let store = &stack.host().app.store;
    let done = || -> anyhow::Result<usize> {
        Ok(store
            .list_events(Some(FAST), Some(EventState::Done), u32::MAX)?
            .len())
    };
    let before = done()?;
    let opps: Vec<String> = (0..n)
        .map(|i| stack.candidate(&format!("{label} {i}"), Some("b@example.com"), &[], None))
        .collect();
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opps.chunks(n.div_ceil(SENDERS)) {
        let (chunk, stack) = (chunk.to_vec(), stack.clone());
        senders.spawn(async move {
            for opp in chunk {
                let _ = stack.move_to(&opp, STAGE).await;
            }
        });
    }
    while senders.join_next().await.is_some() {}
    let deadline = Instant::now() + Duration::from_secs(120);
    while done()? < before + n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((done()? - before) as f64 / started.elapsed().as_secs_f64())
}

/// Leaves `RESUMED` events held by a run that died (lock file left, 5-minute leases), restarts
/// the host and times how long until they are all processed.
async fn resume_after_crash(mut stack: Stack) -> anyhow::Result<(Stack, String)> {
    use switchyard::store::runs::RunLock;
    use switchyard::store::{Claim, Store};
    if let Some(host) = stack.host.take() {
        host.shutdown().await;
    }
    let store = Store::open(&stack.config.storage.path)?;
    let template = store
        .list_events(Some(FAST), Some(EventState::Done), 1)?
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no processed event to copy"))?;
    let lock_dir = switchyard::flow::heartbeat::lock_dir(&stack.config);
    store.begin_run("dead-run", "bench")?;
    // The process "dies": its lock file stays, unlocked.
    drop(RunLock::acquire(&lock_dir, "dead-run")?);
    let mut ids = Vec::new();
    for i in 0..RESUMED {
        store.enqueue(
            FAST,
            &template.kind,
            &format!("bench-resume:{i}"),
            &template.payload,
        )?;
        let claim = Claim {
            run: "dead-run",
            lease_ms: 300_000,
            integration: Some(FAST),
            exclude: &[],
        };
        if let Some(e) = store.claim(&claim)? {
            ids.push(e.id);
        }
    }
    drop(store);
    let started = Instant::now();
    let stack = stack.run().await?;
    let up = started.elapsed();
    let store = &stack.host().app.store;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut all = true;
        for id in &ids {
            let state = store.event(*id)?.map(|e| e.state);
            all &= state == Some(EventState::Done);
        }
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = started.elapsed();
    Ok((
        stack,
        format!(
            "resume: {} events held by a dead run (5-min leases): host up in {up:.2?}, all              processed {took:.2?} after the start (without run-owned leases: after the lease, 300 s)",
            ids.len()
        ),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // 1. Start-up, cold then from the cache. A second integration on the same Lever account runs
    // the `misbehave` connector for candidates moved into STAGE.
    let data = support_admin::data_dir("bench");
    let _ = std::fs::remove_dir_all(&data);
    let dir = connectors_dir(&data, &["certn", "misbehave"]);
    let mut opts = StackOptions::new(&dir, &data);
    opts.extra = vec![(FAST.into(), "misbehave".into(), STAGE.into())];
    let mut stack = Stack::prepare(opts).await?;
    stack.config.server.admin_token = Some(Secret::new(TOKEN));
    let started = Instant::now();
    let stack = stack.run().await?;
    let cold = started.elapsed();
    let started = Instant::now();
    let stack = restart(stack).await?;
    let warm = started.elapsed();
    println!(
        "start-up: cold (compile 2 connectors) {cold:.2?}, restart (compiled-code cache) {warm:.2?}"
    );

    // 2. Intake and processing. Each move is delivered to both integrations' webhooks (the
    // certn one skips it: not its trigger stage), so WEBHOOKS moves are 2 × WEBHOOKS webhooks.
    let opportunities: Vec<String> = (0..WEBHOOKS)
        .map(|i| stack.candidate(&format!("Candidate {i}"), Some("c@example.com"), &[], None))
        .collect();
    let stack = Arc::new(stack);
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opportunities.chunks(WEBHOOKS / SENDERS) {
        let (chunk, stack) = (chunk.to_vec(), stack.clone());
        senders.spawn(async move {
            let mut latencies = Vec::with_capacity(chunk.len());
            for opp in chunk {
                let t = Instant::now();
                let status = stack.move_to(&opp, STAGE).await.unwrap_or(0);
                latencies.push((t.elapsed(), status));
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(r) = senders.join_next().await {
        latencies.extend(r?);
    }
    let acked = started.elapsed();
    let store = &stack.host().app.store;
    let deadline = Instant::now() + Duration::from_secs(300);
    let done = loop {
        let events = store.events(FAST, (WEBHOOKS * 2) as u32)?;
        let done = events
            .iter()
            .filter(|e| e.state == EventState::Done)
            .count();
        if done >= WEBHOOKS || Instant::now() > deadline {
            break done;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let processed = started.elapsed();
    let failed = latencies.iter().filter(|(_, s)| *s != 200).count();
    let mut sorted: Vec<Duration> = latencies.iter().map(|(d, _)| *d).collect();
    sorted.sort();
    println!(
        "intake: {WEBHOOKS} moves = {} signed webhooks ({SENDERS} senders) acknowledged in \
         {acked:.2?} ({:.0} webhooks/s), {failed} moves not 200; per move (2 deliveries, \
         through the Lever simulator) p50 {:.2?} p99 {:.2?}",
        2 * WEBHOOKS,
        (2 * WEBHOOKS) as f64 / acked.as_secs_f64(),
        percentile(&sorted, 0.5),
        percentile(&sorted, 0.99),
    );
    println!(
        "processing: {done}/{WEBHOOKS} events done {processed:.2?} after the first webhook \
         ({:.0}/s, each: connector call + a Lever tag write)",
        done as f64 / processed.as_secs_f64()
    );

    // 3. Bulkheads: one vendor stalled, another integration's throughput.
    let normal = fast_run(&stack, BULKHEAD_MOVES, "normal").await?;
    stack.certn.hang_next(1_000_000);
    for i in 0..STALLED_BACKLOG {
        let opp = stack.candidate(&format!("Stalled {i}"), Some("s@example.com"), &[], None);
        stack.move_to(&opp, switchyard::demo::TRIGGER).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = fast_run(&stack, BULKHEAD_MOVES, "stalled").await?;
    println!(
        "bulkheads: {BULKHEAD_MOVES} events of `{FAST}` alone {normal:.0}/s; with Certn stalled          ({STALLED_BACKLOG} events queued on it, each call hanging until the 5 s deadline)          {stalled:.0}/s = {:.0} % of normal (target >= 80 %)",
        100.0 * stalled / normal
    );
    tokio::time::sleep(Duration::from_secs(8)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", stack.addr))
        .await?
        .text()
        .await?;
    let breaker: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_breaker_"))
        .collect();
    println!("bulkheads: breaker after the stall: {breaker:?}");
    stack.certn.hang_next(0);

    // 4. Resume after a crash.
    let Ok(stack) = Arc::try_unwrap(stack) else {
        anyhow::bail!("stack still shared");
    };
    let (stack, resume) = resume_after_crash(stack).await?;
    println!("{resume}");
    let stack = Arc::new(stack);

    // 5. Hot swap latency through the admin API.
    let admin = Admin::new(&stack, Some(TOKEN));
    let (status, body) = admin
        .post(
            "/admin/connectors/misbehave/versions",
            Some(Body::Bytes(variant(&plugin("misbehave"), "bench"))),
        )
        .await;
    anyhow::ensure!(status == StatusCode::CREATED, "upload: {body}");
    let b = body["version"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut swaps = Vec::with_capacity(SWAPS);
    for i in 0..SWAPS {
        let t = Instant::now();
        let (status, body) = if i % 2 == 0 {
            admin
                .post(
                    &format!("/admin/connectors/misbehave/versions/{b}/activate"),
                    None,
                )
                .await
        } else {
            admin
                .post("/admin/connectors/misbehave/rollback", None)
                .await
        };
        swaps.push(t.elapsed());
        anyhow::ensure!(status == StatusCode::OK, "swap {i}: {body}");
    }
    swaps.sort();
    println!(
        "hot swap: {SWAPS} activate/rollback calls, p50 {:.2?}, max {:.2?} (HTTP round trip included)",
        percentile(&swaps, 0.5),
        swaps.last().copied().unwrap_or_default()
    );
    Ok(())
}
