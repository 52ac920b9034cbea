//! Lever as an authorized app, the way seeds 003 (Canditech) and 004 (Justifacts) set it up:
//! the customer's Lever account is connected through the simulator's consent page (no API key),
//! then a stage change goes to the vendor and the result comes back on Lever.

use std::time::Duration;

use switchyard_sim::canditech::CanditechOptions;
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_sim::lever::{LeverSim, NewOpportunity, Opportunity};
use switchyard_testkit::{
    wait_for, CanditechSetup, Stack, CANDITECH_STAGE, PYTHON_ASSESSMENT, PYTHON_POSTING, TRIGGER,
};
use switchyard_tests::{assert_result_in_secret_note_only, stack};

const LONG: Duration = Duration::from_secs(30);

/// Adds a candidate on a new posting and moves them to `stage` in `lever`.
async fn moved(lever: &LeverSim, posting: &str, tags: &[&str], stage: &str) -> String {
    let posting = lever.add_posting(posting, tags);
    let opp = lever.add_opportunity(NewOpportunity {
        name: "Ada Lovelace".into(),
        emails: vec!["ada@example.com".into()],
        posting_id: Some(posting),
        ..NewOpportunity::default()
    });
    let stage = lever.stage_id(stage).expect("the stage exists");
    assert_eq!(lever.move_to_stage(&opp, &stage).await.unwrap(), 200);
    opp
}

async fn wait(lever: &LeverSim, opp: &str, done: impl Fn(&Opportunity) -> bool) -> Opportunity {
    wait_for(lever, opp, LONG, done).await.unwrap()
}

fn has(o: &Opportunity, tag: &str) -> bool {
    o.tags.iter().any(|t| t == tag)
}

#[tokio::test(flavor = "multi_thread")]
async fn justifacts_connected_as_an_authorized_app_ends_with_the_result_in_a_secret_note() {
    let s: Stack = stack("app-justifacts", |o| {
        o.justifacts = Some(JustifactsOptions {
            step_delay: Some(Duration::from_millis(200)),
            ..JustifactsOptions::default()
        });
        o.justifacts_oauth = true;
    })
    .await;
    // Seed 004: "Activate Lever → sign in to Lever → review the permissions → Accept".
    let answer = s.connect_justifacts().await.expect("the connect dance");
    assert_eq!(answer["status"], "connected", "{answer}");

    let jf = s.justifacts.as_ref().unwrap();
    let tag = "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]";
    let opp = moved(&jf.lever, "Warehouse", &[tag], TRIGGER).await;
    let done = wait(&jf.lever, &opp, |o| {
        has(o, "(Justifacts)Complete") && !o.notes.is_empty()
    })
    .await;
    let orders = jf.sim.order_list();
    assert_eq!(orders.len(), 1, "one order");
    assert_eq!(orders[0].package_code, "13558");
    let url = orders[0].result_url.clone().expect("a result URL");
    assert_result_in_secret_note_only(&done, &url);
}

#[tokio::test(flavor = "multi_thread")]
async fn canditech_connected_as_an_authorized_app_gets_score_and_results_on_lever() {
    let s: Stack = stack("app-canditech", |o| {
        o.canditech = Some(CanditechSetup {
            oauth: true,
            ..CanditechSetup::new(CanditechOptions {
                step_delay: None,
                callback_retry_base: Duration::from_millis(100),
                ..CanditechOptions::default()
            })
        })
    })
    .await;
    // Seed 003: "Connect → log into your Lever account → Accept".
    let answer = s.connect_canditech().await.expect("the connect dance");
    assert_eq!(answer["status"], "connected", "{answer}");

    let ct = s.canditech.as_ref().unwrap();
    let opp = moved(&ct.lever, PYTHON_POSTING, &[], CANDITECH_STAGE).await;
    wait(&ct.lever, &opp, |o| has(o, "Canditech - Invited")).await;
    let invitations = ct.sim.invitations();
    assert_eq!(invitations.len(), 1, "one invitation");
    let inv = &invitations[0];
    assert_eq!(inv.assessment.name, PYTHON_ASSESSMENT);
    ct.sim.send(&inv.id).await.unwrap();
    assert_eq!(ct.sim.start_test(&inv.id).await.unwrap(), 200);
    assert_eq!(ct.sim.complete(&inv.id, 91.0).await.unwrap(), 200);
    let results = format!("{}/results/{}", ct.sim.api_base(), inv.id);
    let done = wait(&ct.lever, &opp, |o| {
        has(o, "Canditech - Completed") && !o.notes.is_empty()
    })
    .await;
    assert_eq!(done.links, vec![results.clone()], "the results link");
    assert_eq!(
        done.notes[0].value,
        format!("Canditech assessment completed: score 91/100. Results: {results}")
    );
}
