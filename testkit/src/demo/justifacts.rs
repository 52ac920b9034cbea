//! Lever → Justifacts (seed 004), a second customer: Verify Connection, the package from a
//! posting tag, the three status tags and the result URL in a secret note (no public link), and
//! a posting without a package tag explained in a note naming the trigger stage.

use std::time::Duration;

use anyhow::Context;
use switchyard_sim::lever::NewOpportunity;

use super::{print_opportunities, print_timeline, verify_connection};
use crate::stack::{wait_for, Stack, JUSTIFACTS, TRIGGER};

pub(super) async fn run(stack: &Stack) -> anyhow::Result<()> {
    let app = &stack.host().app;
    let jf = stack
        .justifacts
        .as_ref()
        .context("the Justifacts customer")?;
    println!("\n── Second customer: Lever → Justifacts ──\n");
    println!("  Justifacts sim    {}", jf.sim.api_base());
    println!(
        "  Lever webhook URL {}  (the seed's \"Webhook Link\")\n",
        app.lever_webhook_url(JUSTIFACTS)
    );
    verify_connection(stack, &jf.lever, JUSTIFACTS).await?;
    let printer = print_timeline(app);
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
    println!("\n▶ Dorothy Vaughan (posting without a package tag) moved to \"{TRIGGER}\"");
    jf.lever.move_to_stage(&dorothy, &stage).await?;
    let dorothy_final = wait_for(&jf.lever, &dorothy, Duration::from_secs(15), |o| {
        o.tags.iter().any(|t| t.starts_with("(Justifacts)ERROR")) && !o.notes.is_empty()
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();

    print_opportunities(
        "Justifacts customer's Lever opportunities (the result URL only in the secret note):",
        &[&katherine_final, &dorothy_final],
    );
    println!("Invitations sent: Justifacts {}", jf.sim.orders());
    Ok(())
}
