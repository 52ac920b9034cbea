//! The demo `switchyard-demo` prints, all on a loopback [`Stack`] with the host's timeline as it
//! happens: each seed's flow as a customer following it would see it.
//!
//! - `certn`: Lever → Certn (seeds 000, 001): statuses up to the report link, a package chosen
//!   by a posting tag, and a candidate without an email recovered by adding one and moving again.
//! - `justifacts`: a second customer on Justifacts (seed 004): Verify Connection, the package
//!   from a posting tag, the result in a secret note, a missing tag explained.
//! - `canditech`: a third customer on Canditech (seed 003): OAuth connect, Verify Connection,
//!   rules, scores, verdicts.
//! - `revoke`: that customer revokes the app in Lever: a candidate moved then is recorded as not
//!   sent, a reconnect sends nothing by itself, an operator's replay sends it once.
//! - `gem`: Gem → Certn (seed 002): Gem's API, signed status webhooks.

mod canditech;
mod certn;
mod gem;
mod justifacts;
mod revoke;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::config::AtsConfig;
use switchyard_sim::canditech::CanditechOptions;
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_sim::lever::{LeverSim, Opportunity};

use crate::stack::{CanditechSetup, GemSetup, Stack, StackOptions};

/// Prints the timeline until aborted.
fn print_timeline(app: &switchyard::app::App) -> tokio::task::JoinHandle<()> {
    let mut feed = app.timeline.subscribe();
    let started = Instant::now();
    tokio::spawn(async move {
        while let Ok(event) = feed.recv().await {
            println!("  {:>6.2}s  {event}", started.elapsed().as_secs_f64());
        }
    })
}

/// Lever's "Verify Connection" on the integration's webhook (seeds 003, 004): Lever sends a
/// signed test ping, switchyard answers 200 without storing an event and records when, which the
/// operator sees as `connection.last_verified_at` in `GET /admin/integrations/{id}`.
async fn verify_connection(
    stack: &Stack,
    lever: &LeverSim,
    integration: &str,
) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let token = stack
        .config
        .integrations
        .iter()
        .find(|i| i.id == integration)
        .and_then(|i| match &i.ats {
            AtsConfig::Lever(l) => Some(l.signature_token.expose().to_string()),
            _ => None,
        })
        .context("a Lever integration")?;
    let answered = lever
        .send_test_ping(&app.lever_webhook_url(integration), &token)
        .await?;
    let recorded = app
        .store
        .connection(integration)?
        .verified_at
        .map(|ms| switchyard::clock::rfc3339(ms / 1000))
        .unwrap_or_else(|| "never".into());
    println!(
        "▶ Lever → Webhooks → Candidate Stage Change → Verify Connection → {answered}; \
         switchyard recorded it (last_verified_at {recorded})"
    );
    Ok(())
}

/// Prints opportunities as a recruiter sees them in Lever.
fn print_opportunities(title: &str, opportunities: &[&Opportunity]) {
    println!("\n{title}");
    for opp in opportunities {
        println!("  {} ({})", opp.name, opp.id);
        println!("    tags:  {:?}", opp.tags);
        if !opp.links.is_empty() {
            println!("    links: {:?}", opp.links);
        }
        for note in &opp.notes {
            let secret = if note.secret { "secret " } else { "" };
            println!("    {secret}note: {}", note.value);
        }
    }
}

/// Runs the demo: each seed's flow in turn on one stack (see the module map).
pub async fn run(connectors: &Path) -> anyhow::Result<()> {
    for name in ["certn", "justifacts", "canditech"] {
        let wasm = connectors.join(format!("{name}.wasm"));
        anyhow::ensure!(
            wasm.exists(),
            "{} not found: build the plugins first (cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml)",
            wasm.display()
        );
    }
    let data = std::env::temp_dir().join(format!("switchyard-demo-{}", uuid::Uuid::new_v4()));
    let mut opts = StackOptions::new(connectors, &data);
    opts.certn.step_delay = Some(Duration::from_millis(600));
    opts.justifacts = Some(JustifactsOptions {
        step_delay: Some(Duration::from_millis(600)),
        ..JustifactsOptions::default()
    });
    opts.gem = Some(GemSetup::default());
    // Scripted (no automatic progression): the demo plays the candidate and the reviewers.
    opts.canditech = Some(CanditechSetup {
        // The seed's setup: the Canditech app is authorized in Lever (OAuth), no API key.
        oauth: true,
        ..CanditechSetup::new(CanditechOptions {
            step_delay: None,
            ..CanditechOptions::default()
        })
    });
    let stack = Stack::start(opts).await?;

    certn::run(&stack).await?;
    justifacts::run(&stack).await?;
    canditech::run(&stack).await?;
    revoke::run(&stack).await?;
    gem::run(&stack).await?;
    if let Some(host) = stack.host {
        host.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
