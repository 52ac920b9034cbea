//! The same connector logic native vs as a Wasm component, **end to end**: the in-process host
//! (simulators in this process) runs one integration on the `twin` connector, and Lever stage
//! changes go through the whole flow — signed webhook, group commit, claim, Lever reads, the
//! twin's `start-screening` (an invitation at the Certn simulator, which answers at once), the
//! status recorded, the Lever write-back, the event finished. Between rounds only the connector
//! call changes: the component (`twin.wasm`), or the same `twin::connector` module linked into
//! this process (`LoadedConnector::run_natively` with `switchyard_tests::bench_wasm::NativeTwin`).
//! Rounds alternate (Wasm, native, Wasm, native) after a warm-up of each.

use std::sync::Arc;

use anyhow::Context;
use switchyard::config::Secret;
use switchyard::wasm::connector::NativeLogic;
use switchyard_testkit::{Stack, StackOptions};
use switchyard_tests::bench_wasm::NativeTwin;

use super::in_process::processed;
use super::table::Row;
use switchyard_tests::support_admin::{self, connectors_dir};

const TWIN: &str = "bench-twin";
const STAGE: &str = "Twin Stage";
const WARM: usize = 100;
/// Events per round; two rounds per side.
const EVENTS: usize = 500;

/// Appends the row.
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let data = support_admin::data_dir("bench-twin");
    let _ = std::fs::remove_dir_all(&data);
    let dir = connectors_dir(&data, &["certn", "twin"]);
    let mut opts = StackOptions::new(&dir, &data);
    opts.certn.step_delay = None;
    opts.extra = vec![(TWIN.into(), "twin".into(), STAGE.into())];
    let mut stack = Stack::prepare(opts).await?;
    stack.lever.add_stage(STAGE);
    let key = stack.certn.api_key();
    let twin = (stack.config.integrations.iter_mut())
        .find(|i| i.id == TWIN)
        .context("the twin integration")?;
    twin.secrets
        .insert(twin::connector::KEY_API_KEY.into(), Secret::new(key));
    let stack = Arc::new(stack.run().await?);
    let connector = (stack.host().app.registry)
        .get(twin::connector::ID)
        .context("twin.wasm is not loaded")?;
    let native: Arc<dyn NativeLogic> = Arc::new(NativeTwin);
    let mut per_s = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for (side, logic) in [None, Some(native.clone())].into_iter().enumerate() {
            connector.run_natively(logic);
            let n = if round == 0 { WARM } else { EVENTS };
            let rate = processed(&stack, TWIN, STAGE, n, &format!("twin {round} {side}")).await?;
            if round > 0 {
                per_s[side].push(rate);
            }
        }
    }
    connector.run_natively(None);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (wasm, native) = (mean(&per_s[0]), mean(&per_s[1]));
    rows.push(Row::against(
        format!(
            "events/s end to end, Wasm vs native twin ({} events each)",
            2 * EVENTS
        ),
        (wasm, format!("{wasm:.0}/s")),
        (native, format!("native {native:.0}/s")),
        ">= 0.80",
    ));
    if let Ok(stack) = Arc::try_unwrap(stack) {
        if let Some(host) = stack.host {
            host.shutdown().await;
        }
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
