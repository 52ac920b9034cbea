//! Many customers: the same intake run against hosts configured with 1, 100, 1,000 and 10,000
//! integrations, every webhook to one of them. A host's cost per webhook must not grow with how
//! many integrations it serves (issue 25, item 5), and neither may its start-up.
//!
//! One simulator stack (one Lever account holding every integration's webhook), one fresh data
//! directory and `switchyard serve` per count; the filler integrations use the `misbehave`
//! connector (loaded once, whatever the count) and receive nothing.

use std::time::Instant;

use anyhow::Context;
use switchyard_testkit::{Stack, StackOptions};
use switchyard_tests::lever_of;
use switchyard_tests::serve::{cpu_secs, cpu_us_per, serve, write_config};
use switchyard_tests::support_admin::connectors_dir;

use super::external::{failures, integration};
use super::loadgen::{drive, Drive, Load};
use super::table::Row;

/// The integration every webhook goes to.
const TARGET: &str = "bench-target";
const TRIGGER: &str = "Fast Stage";
/// Not the trigger: each stored event is later skipped after a stage lookup.
const STAGE: &str = "Offer";
/// Configured integrations per run.
pub const COUNTS: [usize; 4] = [1, 100, 1_000, 10_000];
/// Webhooks per run (closed loop), fewer than the main intake rows: four hosts start here.
const REQUESTS: usize = 10_000;
const MAX_SECS: u32 = 15;
const CONNECTIONS: usize = 64;

/// Appends one row per count in [`COUNTS`]: acks/s and host CPU per ack, and the start-up time.
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("switchyard-bench-customers-")
        .tempdir()?;
    let connectors = connectors_dir(tmp.path(), &["misbehave"]);
    let most = COUNTS.iter().copied().max().unwrap_or(1);
    let mut opts = StackOptions::new(&connectors, tmp.path());
    opts.extra = std::iter::once(TARGET.to_string())
        .chain((1..most).map(|i| format!("bench-filler-{i}")))
        .map(|id| (id, "misbehave".to_string(), TRIGGER.to_string()))
        .collect();
    let stack = Stack::prepare(opts).await?;
    let target = integration(&stack, TARGET)?;
    let token = lever_of(target).signature_token.expose();
    let stage = stack.lever.stage_id(STAGE).context("intake stage")?;
    // The stack's own Certn integration is left out: the count is exact.
    let mut all = stack.config.integrations.clone();
    all.retain(|i| i.id.starts_with("bench-"));
    for count in COUNTS {
        let dir = tmp.path().join(format!("n{count}"));
        std::fs::create_dir_all(&dir)?;
        let mut config = stack.config.clone();
        config.integrations = all.iter().take(count).cloned().collect();
        config.storage.path = dir.join("switchyard.db");
        let file = write_config(&config, &dir);
        let t = Instant::now();
        let host = serve(&file, stack.addr).await;
        let started = t.elapsed();
        let cpu = cpu_secs(host.pid());
        let r = drive(
            &Drive {
                url: format!("http://{}/hooks/{TARGET}/lever", stack.addr),
                signature_token: token,
                stage: &stage,
                opportunities: None,
                connections: CONNECTIONS,
            },
            Load::Closed {
                requests: REQUESTS,
                max_secs: MAX_SECS,
            },
        )
        .await?;
        let acked = r["acked_per_s"].as_f64().unwrap_or_default();
        let ok = r["ok"].as_f64().unwrap_or_default();
        let cpu_us = cpu_us_per(cpu, host.pid(), ok);
        rows.push(Row::plain(
            format!("{count} integrations: acked webhooks/s, host CPU per ack, start-up"),
            format!(
                "{acked:.0}/s, {cpu_us:.0} µs per ack ({} not 200; processing included); \
                 start-up {started:.2?}",
                failures(&r)
            ),
            "µs per ack independent of the count",
        ));
        host.stop().await;
    }
    Ok(())
}
