//! Figures of the in-process host (a [`Stack`]: simulators and host in this process): bulkheads,
//! resume after a crash, hot swap through the admin API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use switchyard::config::Secret;
use switchyard::store::EventState;
use switchyard_testkit::{Stack, StackOptions};

use super::table::Row;
use switchyard_tests::support_admin::{self, connectors_dir, plugin, variant, Admin, Body, TOKEN};

const SWAPS: usize = 20;
const STAGE: &str = "Fast Stage";
const FAST: &str = "fast";
const BULKHEAD_MOVES: usize = 600;
const STALLED_BACKLOG: usize = 40;
const RESUMED: usize = 40;
const SENDERS: usize = 8;

/// Runs the phases and appends their rows.
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    // A second integration on the same Lever account runs the `misbehave` connector (no vendor
    // round trip) for candidates moved into STAGE.
    let data = support_admin::data_dir("bench");
    let _ = std::fs::remove_dir_all(&data);
    let dir = connectors_dir(&data, &["certn", "misbehave"]);
    let mut opts = StackOptions::new(&dir, &data);
    opts.extra = vec![(FAST.into(), "misbehave".into(), STAGE.into())];
    let mut stack = Stack::prepare(opts).await?;
    stack.config.server.admin_token = Some(Secret::new(TOKEN));
    let stack = Arc::new(stack.run().await?);

    // Bulkheads: one vendor stalled, another integration's throughput.
    let normal = processed(&stack, FAST, STAGE, BULKHEAD_MOVES, "normal").await?;
    stack.certn.hang_next(1_000_000);
    for i in 0..STALLED_BACKLOG {
        let opp = stack.candidate(&format!("Stalled {i}"), Some("s@example.com"), &[], None);
        stack.move_to(&opp, switchyard_testkit::TRIGGER).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled = processed(&stack, FAST, STAGE, BULKHEAD_MOVES, "stalled").await?;
    rows.push(Row::against(
        "bulkheads: fast integration's events/s, Certn stalled (vs alone)",
        (stalled, format!("{stalled:.0}/s")),
        (normal, format!("alone {normal:.0}/s")),
        ">= 0.80",
    ));
    tokio::time::sleep(Duration::from_secs(8)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", stack.addr))
        .await?
        .text()
        .await?;
    let open = metrics
        .lines()
        .filter(|l| l.starts_with("switchyard_breaker_") && !l.ends_with(" 0"))
        .count();
    eprintln!("bulkheads: breaker series not zero after the stall: {open}");
    stack.certn.hang_next(0);

    // Resume after a crash.
    let Ok(stack) = Arc::try_unwrap(stack) else {
        anyhow::bail!("stack still shared");
    };
    let (stack, resumed) = resume_after_crash(stack).await?;
    rows.push(resumed);
    let stack = Arc::new(stack);

    // Hot swap latency through the admin API.
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
    rows.push(Row::plain(
        format!("hot swap: {SWAPS} activate/rollback via the admin API"),
        format!(
            "p50 {:.2?}, max {:.2?}",
            percentile(&swaps, 0.5),
            swaps.last().copied().unwrap_or_default()
        ),
        "-",
    ));
    if let Ok(stack) = Arc::try_unwrap(stack) {
        if let Some(host) = stack.host {
            host.shutdown().await;
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}

/// Moves `n` new candidates into `stage` from `SENDERS` senders; returns `integration`'s
/// processed events/s (first move to the last event done).
pub async fn processed(
    stack: &Arc<Stack>,
    integration: &str,
    stage: &str,
    n: usize,
    label: &str,
) -> anyhow::Result<f64> {
    let store = &stack.host().app.store;
    let done = || -> anyhow::Result<usize> {
        Ok(store
            .list_events(Some(integration), Some(EventState::Done), u32::MAX)?
            .len())
    };
    let before = done()?;
    let opps: Vec<String> = (0..n)
        .map(|i| {
            let email = format!("{label}-{i}@example.com").replace(' ', "-");
            stack.candidate(&format!("{label} {i}"), Some(&email), &[], None)
        })
        .collect();
    let started = Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opps.chunks(n.div_ceil(SENDERS)) {
        let (chunk, stack, stage) = (chunk.to_vec(), stack.clone(), stage.to_string());
        senders.spawn(async move {
            for opp in chunk {
                let _ = stack.move_to(&opp, &stage).await;
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
async fn resume_after_crash(mut stack: Stack) -> anyhow::Result<(Stack, Row)> {
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
        Row::plain(
            format!(
                "resume: {} events of a dead run, restart → all done",
                ids.len()
            ),
            format!("{took:.2?} (host up in {up:.2?})"),
            "well before the 300 s lease",
        ),
    ))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}
