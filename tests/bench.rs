//! Benchmarks of the host's own path, on loopback (not run by the test suite; figures, not
//! pass/fail). Run: `cargo bench -p switchyard-tests --bench host` after `scripts/setup.sh`
//! (and the fixtures build, see `scripts/test.sh`).
//!
//! 1. Start-up: the first start compiles every connector; a restart loads the on-disk cache.
//! 2. Intake and processing: `WEBHOOKS` signed Lever webhooks from 8 concurrent senders into an
//!    integration on the `misbehave` connector (no vendor round trip), so what is measured is
//!    webhook → verify → commit → ack, then worker → connector → Lever write-back.
//! 3. Hot swap: activate / roll back a connector version through the admin API.

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

    // 3. Hot swap latency through the admin API.
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
