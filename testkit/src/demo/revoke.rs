//! Revoke means off (seeds 003, 004: "revoke access … to disable the integration"): the
//! Canditech customer revokes the app in Lever; a candidate moved afterwards is recorded as not
//! sent and nobody is invited; reconnecting sends nothing by itself; an operator's replay sends
//! exactly that one.

use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::store::EventState;
use switchyard_sim::lever::NewOpportunity;

use crate::stack::{wait_for, Stack, CANDITECH, CANDITECH_STAGE, PYTHON_POSTING};

/// The event of `integration` skipped as not sent, once there is one: (id, reason).
async fn not_sent(stack: &Stack, integration: &str) -> anyhow::Result<(i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let events = stack.host().app.store.events(integration, 50)?;
        let found = events.into_iter().find(|e| {
            e.state == EventState::Skipped
                && e.last_error
                    .as_deref()
                    .is_some_and(|r| r.starts_with("not sent: "))
        });
        if let Some(e) = found {
            return Ok((e.id, e.last_error.unwrap_or_default()));
        }
        anyhow::ensure!(Instant::now() < deadline, "the move was never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn run(stack: &Stack) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let ct = stack.canditech.as_ref().context("the Canditech customer")?;
    let client_id = &app
        .config
        .lever_oauth
        .as_ref()
        .context("the host's Lever OAuth app")?
        .client_id;
    println!("\n── Revoke means off: the Canditech customer disables the integration ──\n");
    println!(
        "▶ Lever → Settings → Integrations and API → Authorized Apps → Canditech → Revoke Access"
    );
    ct.lever.revoke_app(client_id);
    let posting = ct.lever.add_posting(PYTHON_POSTING, &[]);
    let ada = ct.lever.add_opportunity(NewOpportunity {
        name: "Ada Lovelace".into(),
        emails: vec!["ada@example.com".into()],
        posting_id: Some(posting),
        ..NewOpportunity::default()
    });
    let stage = ct
        .lever
        .stage_id(CANDITECH_STAGE)
        .context("the Canditech Stage")?;
    let invited_before = ct.sim.invitations().len();
    println!("▶ Ada Lovelace moved to \"{CANDITECH_STAGE}\" after the revoke");
    ct.lever.move_to_stage(&ada, &stage).await?;
    let (id, reason) = not_sent(stack, CANDITECH).await?;
    println!("  → event {id} recorded as {reason}");
    println!(
        "  → invitations: {} (none new)\n",
        ct.sim.invitations().len()
    );
    anyhow::ensure!(
        ct.sim.invitations().len() == invited_before,
        "invited while off"
    );

    println!("▶ The customer connects again (Connect → log into Lever → Accept)");
    let connected = stack.connect_canditech().await?;
    println!(
        "  → {}, events resumed by themselves: {}",
        connected["status"].as_str().unwrap_or("?"),
        connected["resumed_events"]
    );
    println!("▶ The operator replays the one not sent: POST /admin/events/{id}/retry");
    anyhow::ensure!(
        app.store.retry_event(id)? == switchyard::store::Retried::Queued,
        "the replay was refused"
    );
    app.wake.notify_waiters();
    let has =
        |o: &switchyard_sim::lever::Opportunity| o.tags.iter().any(|t| t == "Canditech - Invited");
    let done = wait_for(&ct.lever, &ada, Duration::from_secs(30), has).await?;
    println!(
        "  → Ada Lovelace in Lever: {:?}; invitations: {} (one more)",
        done.tags,
        ct.sim.invitations().len()
    );
    Ok(())
}
