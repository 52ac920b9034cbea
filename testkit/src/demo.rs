//! The demo `switchyard-demo` prints: Lever → Certn, a second customer on Justifacts, a third on
//! Canditech (OAuth connect, rules, scores, verdicts), then Gem → Certn, all on a loopback
//! [`Stack`], with the host's timeline as it happens.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_sim::canditech::{CanditechOptions, Verdict};
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_sim::lever::{NewOpportunity, Opportunity};

use crate::stack::{
    wait_for, CanditechSetup, GemSetup, Stack, StackOptions, CANDITECH, CANDITECH_STAGE, CERTN,
    GEM, JUSTIFACTS, PYTHON_ASSESSMENT, PYTHON_POSTING, TRIGGER,
};

/// The Gem part of the demo: the same Certn connector, driven by Gem's API instead of Lever's
/// webhooks, reporting back through signed status webhooks.
async fn run_gem(stack: &Stack) -> anyhow::Result<()> {
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

    let mut feed = app.timeline.subscribe();
    let started = Instant::now();
    let printer = tokio::spawn(async move {
        while let Ok(event) = feed.recv().await {
            println!("  {:>6.2}s  {event}", started.elapsed().as_secs_f64());
        }
    });
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

/// The Canditech part of the demo: a rule attaches an assessment to (posting, stage); a candidate
/// of another posting is skipped; the invited candidate goes through to a score, a results link,
/// a reviewer's thumbs up and a changed verdict, all shown in Lever.
async fn run_canditech(stack: &Stack) -> anyhow::Result<()> {
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

/// Runs the demo: one candidate through to `CERTN - Complete`, one without an email; a second
/// customer's candidates through Justifacts (package from a posting tag, and a missing tag); then
/// a Gem integration sending a check through the same Certn connector.
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
    let app = &stack.host().app;
    let connector = app
        .registry
        .get("certn")
        .context("the certn connector did not load")?;

    println!("switchyard demo — everything below runs on loopback\n");
    println!("  Lever simulator   {}", stack.lever.api_base());
    println!("  Certn simulator   {}", stack.certn.api_base());
    println!(
        "  switchyard        http://{}  (store: {})",
        stack.addr,
        stack.config.storage.path.display()
    );
    println!(
        "  connector loaded  {} ({})",
        connector.version_tag(),
        connector.manifest.display_name
    );
    println!("  Lever webhook URL {}", app.lever_webhook_url(CERTN));
    println!("  Certn webhook URL {}\n", app.callback_url(CERTN));

    let mut feed = app.timeline.subscribe();
    let started = Instant::now();
    let printer = tokio::spawn(async move {
        while let Ok(event) = feed.recv().await {
            println!("  {:>6.2}s  {event}", started.elapsed().as_secs_f64());
        }
    });

    let posting = stack
        .lever
        .add_posting("Senior Rust Engineer", &["Engineering"]);
    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    println!("▶ Ada Lovelace (ada@example.com) moved to \"{TRIGGER}\"");
    stack.move_to(&ada, TRIGGER).await?;
    let ada_final = stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t == "CERTN - Complete") && !o.links.is_empty()
        })
        .await?;

    let grace = stack.candidate("Grace Hopper", None, &[], Some(&posting));
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("\n▶ Grace Hopper (no email) moved to \"{TRIGGER}\"");
    stack.move_to(&grace, TRIGGER).await?;
    let grace_final = stack
        .wait_for(&grace, Duration::from_secs(15), |o| {
            o.tags.iter().any(|t| t == "CERTN - ERROR (No Email)")
        })
        .await?;

    // A second customer: Lever wired to Justifacts. The package comes from a posting tag.
    let jf = stack
        .justifacts
        .as_ref()
        .context("the Justifacts customer")?;
    println!("\n— Second customer: Lever → Justifacts —");
    println!("  Justifacts sim    {}", jf.sim.api_base());
    println!(
        "  Lever webhook URL {}  (the seed's \"Webhook Link\")",
        app.lever_webhook_url(JUSTIFACTS)
    );
    let tagged = jf.lever.add_posting(
        "Warehouse Associate",
        &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"],
    );
    let untagged = jf.lever.add_posting("Forklift Operator", &[]);
    let katherine = jf.lever.add_opportunity(NewOpportunity {
        name: "Katherine Johnson".into(),
        emails: vec!["katherine@example.com".into()],
        posting_id: Some(tagged),
        ..NewOpportunity::default()
    });
    let dorothy = jf.lever.add_opportunity(NewOpportunity {
        name: "Dorothy Vaughan".into(),
        emails: vec!["dorothy@example.com".into()],
        posting_id: Some(untagged),
        ..NewOpportunity::default()
    });
    let stage = jf
        .lever
        .stage_id(TRIGGER)
        .context("Background Check stage")?;
    println!("\n▶ Katherine Johnson (posting tagged EmpCod 13558) moved to \"{TRIGGER}\"");
    jf.lever.move_to_stage(&katherine, &stage).await?;
    let katherine_final = wait_for(&jf.lever, &katherine, Duration::from_secs(30), |o| {
        o.tags.iter().any(|t| t == "(Justifacts)Complete") && !o.notes.is_empty()
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("\n▶ Dorothy Vaughan (posting without a package tag) moved to \"{TRIGGER}\"");
    jf.lever.move_to_stage(&dorothy, &stage).await?;
    let dorothy_final = wait_for(&jf.lever, &dorothy, Duration::from_secs(15), |o| {
        o.tags.iter().any(|t| t.starts_with("(Justifacts)ERROR"))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();

    println!("\nFinal Lever opportunities:");
    for opp in [&ada_final, &grace_final, &katherine_final, &dorothy_final] {
        println!("  {} ({})", opp.name, opp.id);
        println!("    tags:  {:?}", opp.tags);
        if !opp.links.is_empty() {
            println!("    links: {:?}", opp.links);
        }
        for note in &opp.notes {
            println!(
                "    {}note: {}",
                if note.secret { "secret " } else { "" },
                note.value
            );
        }
    }
    println!(
        "\nInvitations sent: Certn {}, Justifacts {}",
        stack.certn.applications().len(),
        jf.sim.orders()
    );

    run_canditech(&stack).await?;
    run_gem(&stack).await?;
    if let Some(host) = stack.host {
        host.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
