//! Lever → Canditech (seed 003): the app connected through OAuth, Verify Connection, a rule
//! attaching an assessment to (posting, stage), scores, results links and reviewer verdicts.

use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_sim::canditech::Verdict;
use switchyard_sim::lever::{NewOpportunity, Opportunity};

use super::{print_timeline, verify_connection};
use crate::stack::{
    wait_for, Stack, CANDITECH, CANDITECH_STAGE, PYTHON_ASSESSMENT, PYTHON_POSTING,
};

/// The customer connects Lever as an authorized app and verifies the webhook; a candidate of
/// another posting is skipped; the invited candidate goes through to a score, a results link, a
/// reviewer's thumbs up and a changed verdict, all shown in Lever.
pub(super) async fn run(stack: &Stack) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let ct = stack.canditech.as_ref().context("the Canditech customer")?;
    println!("\n── Third customer: Lever → Canditech (skills assessments, reviewer verdicts) ──\n");
    println!("  Canditech sim     {}", ct.sim.api_base());
    println!("  Lever webhook URL {}", app.lever_webhook_url(CANDITECH));
    println!("  Canditech webhook {}", app.callback_url(CANDITECH));
    let offered: Vec<String> = ct.sim.assessments().into_iter().map(|a| a.name).collect();
    println!("  Assessments       {offered:?} (the connector's list-packages)");
    println!(
        "  Rule              posting {PYTHON_POSTING:?} + stage {CANDITECH_STAGE:?} → {PYTHON_ASSESSMENT:?}\n"
    );
    println!("▶ Canditech → Settings → Integrations → Lever → Connect: log into Lever, Accept");
    let connected = stack.connect_canditech().await?;
    println!(
        "  → Lever answered the OAuth consent; switchyard: {}\n",
        connected
            .get("status")
            .and_then(|s| s.as_str())
            .unwrap_or("?")
    );
    verify_connection(stack, &ct.lever, CANDITECH).await?;
    println!();
    let printer = print_timeline(app);
    let python = ct.lever.add_posting(PYTHON_POSTING, &["Engineering"]);
    let analyst = ct.lever.add_posting("Data Analyst", &[]);
    let guido = ct.lever.add_opportunity(NewOpportunity {
        name: "Guido van Rossum".into(),
        emails: vec!["guido@example.com".into()],
        posting_id: Some(python),
        ..NewOpportunity::default()
    });
    let hedy = ct.lever.add_opportunity(NewOpportunity {
        name: "Hedy Lamarr".into(),
        emails: vec!["hedy@example.com".into()],
        posting_id: Some(analyst),
        ..NewOpportunity::default()
    });
    let stage = ct
        .lever
        .stage_id(CANDITECH_STAGE)
        .context("the Canditech Stage")?;

    println!("▶ Hedy Lamarr (posting \"Data Analyst\") moved to \"{CANDITECH_STAGE}\"");
    ct.lever.move_to_stage(&hedy, &stage).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let skipped = loop {
        let events = app.store.events(CANDITECH, 20)?;
        if let Some(e) = events
            .iter()
            .find(|e| e.state == switchyard::store::EventState::Skipped)
        {
            break e.last_error.clone().unwrap_or_default();
        }
        anyhow::ensure!(Instant::now() < deadline, "the move was never decided");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("  → skipped: {skipped}\n");

    println!("▶ Guido van Rossum (posting {PYTHON_POSTING:?}) moved to \"{CANDITECH_STAGE}\"");
    ct.lever.move_to_stage(&guido, &stage).await?;
    let has = |o: &Opportunity, tag: &str| o.tags.iter().any(|t| t == tag);
    let within = Duration::from_secs(30);
    wait_for(&ct.lever, &guido, within, |o| has(o, "Canditech - Invited")).await?;
    let invitation = ct
        .sim
        .invitations()
        .into_iter()
        .last()
        .context("no invitation")?;
    println!(
        "  → invitation {} to {:?} for {}\n",
        invitation.id, invitation.assessment.name, invitation.candidate.email
    );
    let id = invitation.id;
    println!("▶ Canditech emails the invitation; Guido opens the test");
    ct.sim.send(&id).await?;
    ct.sim.start_test(&id).await?;
    wait_for(&ct.lever, &guido, within, |o| has(o, "Canditech - Started")).await?;
    println!("\n▶ Guido submits (score 87/100)");
    ct.sim.complete(&id, 87.0).await?;
    wait_for(&ct.lever, &guido, within, |o| {
        has(o, "Canditech - Completed") && !o.links.is_empty() && o.notes.len() == 1
    })
    .await?;
    println!("\n▶ Riley Reviewer gives the session a thumbs up");
    ct.sim.give_verdict(&id, Verdict::ThumbsUp).await?;
    wait_for(&ct.lever, &guido, within, |o| {
        has(o, "Canditech - Thumbs Up") && o.notes.len() == 2
    })
    .await?;
    println!("\n▶ Sam Second changes the verdict to thumbs down");
    ct.sim
        .give_verdict_by(&id, Verdict::ThumbsDown, "Sam Second")
        .await?;
    let done = wait_for(&ct.lever, &guido, within, |o| {
        has(o, "Canditech - Thumbs Down") && !has(o, "Canditech - Thumbs Up") && o.notes.len() == 3
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();
    println!("\nGuido van Rossum in Lever ({}):", done.id);
    println!("    tags:  {:?}", done.tags);
    println!("    links: {:?}", done.links);
    for note in &done.notes {
        println!("    note:  {}", note.value);
    }
    println!(
        "Invitations sent: Canditech {} (Hedy Lamarr got none)",
        ct.sim.invitations().len()
    );
    Ok(())
}
