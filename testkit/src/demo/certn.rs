//! Lever → Certn (seeds 000, 001): a candidate through to `CERTN - Complete` with the report
//! link; a package chosen by a tag the posting gives its candidates (seed 000's tip); and a
//! candidate without an email, recovered the way seed 001 says: add one, move them again.

use std::time::Duration;

use anyhow::Context;

use super::{print_opportunities, print_timeline};
use crate::stack::{Stack, CERTN, TRIGGER};

/// The stage a recruiter moves a candidate back to before moving them into the trigger again.
const EARLIER_STAGE: &str = "Phone screen";

fn has(o: &switchyard_sim::lever::Opportunity, tag: &str) -> bool {
    o.tags.iter().any(|t| t == tag)
}

/// The Certn package the candidate's invitation ordered, once Certn has it.
fn ordered_package(stack: &Stack, email: &str) -> Option<String> {
    stack
        .certn
        .applications()
        .into_iter()
        .find(|a| a.applicant.email == email)
        .map(|a| a.package)
}

pub(super) async fn run(stack: &Stack) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let connector = app
        .registry
        .get("certn")
        .context("the certn connector did not load")?;
    let packages: Vec<String> = stack.config.integrations[0]
        .packages
        .iter()
        .map(|p| format!("{}{}", p.name, if p.default { " (default)" } else { "" }))
        .collect();

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
    println!("  Certn packages    {}", packages.join(", "));
    println!("  Lever webhook URL {}", app.lever_webhook_url(CERTN));
    println!("  Certn webhook URL {}\n", app.callback_url(CERTN));

    let printer = print_timeline(app);
    let within = Duration::from_secs(30);
    let posting = stack
        .lever
        .add_posting("Senior Rust Engineer", &["Engineering"]);
    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    println!("▶ Ada Lovelace (ada@example.com) moved to \"{TRIGGER}\"");
    stack.move_to(&ada, TRIGGER).await?;
    let ada_final = stack
        .wait_for(&ada, within, |o| {
            has(o, "CERTN - Complete") && !o.links.is_empty()
        })
        .await?;

    // Seed 000's tip: a tag on the posting reaches every candidate of it, and a tag naming
    // another package overrides the default.
    let executive = stack.lever.add_posting("Chief of Staff", &["Premium"]);
    let alan = stack.candidate(
        "Alan Turing",
        Some("alan@example.com"),
        &[],
        Some(&executive),
    );
    println!(
        "\n▶ Alan Turing (posting \"Chief of Staff\", tagged \"Premium\") moved to \"{TRIGGER}\""
    );
    stack.move_to(&alan, TRIGGER).await?;
    let alan_final = stack
        .wait_for(&alan, within, |o| has(o, "CERTN - Complete"))
        .await?;
    let ordered = ordered_package(stack, "alan@example.com").unwrap_or_default();
    println!("  → Certn was asked for package {ordered:?} (the posting's tag), not the default");

    // Seed 001: "There is no email attached to the candidate. Add one and then move them into
    // the trigger stage again."
    let grace = stack.candidate("Grace Hopper", None, &[], Some(&posting));
    println!("\n▶ Grace Hopper (no email) moved to \"{TRIGGER}\"");
    stack.move_to(&grace, TRIGGER).await?;
    stack
        .wait_for(&grace, within, |o| has(o, "CERTN - ERROR (No Email)"))
        .await?;
    println!(
        "\n▶ The recruiter adds grace@example.com, moves Grace back to \"{EARLIER_STAGE}\" and \
         into \"{TRIGGER}\" again"
    );
    stack.lever.set_emails(&grace, &["grace@example.com"])?;
    stack.move_to(&grace, EARLIER_STAGE).await?;
    stack.move_to(&grace, TRIGGER).await?;
    let grace_final = stack
        .wait_for(&grace, within, |o| {
            has(o, "CERTN - Complete") && !has(o, "CERTN - ERROR (No Email)")
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();

    print_opportunities(
        "Final Lever opportunities:",
        &[&ada_final, &alan_final, &grace_final],
    );
    println!(
        "Invitations sent: Certn {} (Grace's first move sent none)",
        stack.certn.applications().len()
    );
    Ok(())
}
