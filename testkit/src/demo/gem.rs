//! Gem → Certn: the same Certn connector, driven by Gem's API instead of Lever's webhooks,
//! reporting back through signed status webhooks (seed 002).

use std::time::{Duration, Instant};

use anyhow::Context;

use super::print_timeline;
use crate::stack::{Stack, GEM};

/// Lists packages, sends a Premium check and prints the signed status webhooks Gem received.
pub(super) async fn run(stack: &Stack) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();
    println!("\n── Gem → Certn: Gem calls switchyard, status goes back as signed webhooks ──\n");
    println!(
        "  Gem API           {}  (X-API-Key sy_{}_…, issued once)",
        app.gem_api_url(GEM),
        key.key_id
    );
    println!("  Gem webhook URL   {}", gem.sim.webhook_url());
    println!(
        "  Certn webhook URL {} (a second Certn team)\n",
        app.callback_url(GEM)
    );

    let printer = print_timeline(app);
    let (code, packages) = gem.sim.list_packages(&host, GEM, &key.key).await?;
    println!("▶ Gem lists packages → {code} {packages}");
    let body = serde_json::json!({
        "application_id": "gem-app-42",
        "candidate": {"name": "Katherine Johnson", "emails": ["katherine@example.com"], "phones": []},
        "package": "Premium",
        "stage": "Offer",
    });
    let (code, sent) = gem
        .sim
        .send_check(&host, GEM, &key.key, &body, None)
        .await?;
    println!("▶ Gem sends a Premium check for Katherine Johnson → {code} {sent}");
    let id = sent["id"].as_str().context("no screening id")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !gem
        .sim
        .received()
        .iter()
        .any(|r| r.screening_id.as_deref() == Some(id.as_str()) && r.state == "complete")
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "Gem never saw the screening complete"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();
    let bad = "sy_000000000000_not-a-key";
    let (denied, _) = gem.sim.list_packages(&host, GEM, bad).await?;
    println!("\n▶ A call with a wrong key → {denied}");

    println!("\nStatus webhooks Gem received and verified (Standard Webhooks, HMAC-SHA256):");
    for r in gem.sim.received() {
        println!(
            "  {}  {:<9} {:<18} {}",
            r.webhook_id,
            r.state,
            r.label,
            r.results_url.as_deref().unwrap_or("-")
        );
    }
    let (_, status) = gem.sim.screening(&host, GEM, &key.key, &id).await?;
    println!("\nGET /gem/{GEM}/screenings/{id} → {status}");
    Ok(())
}
