//! Lever permissions (docs/lever.md): the flows run with exactly the documented grant, and a
//! missing permission makes the event wait, named, until someone grants it.

use std::time::Duration;

use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_sim::lever::{LeverSim, NewOpportunity};
use switchyard_testkit::{wait_for, TRIGGER};
use switchyard_tests::{all_done, stack};

const LONG: Duration = Duration::from_secs(30);

/// Every request `lever` answered 403, and every read of notes or postings, as `METHOD path`.
fn outside_the_smallest_grant(lever: &LeverSim) -> Vec<String> {
    lever
        .request_log()
        .into_iter()
        .filter(|r| {
            r.status == 403
                || (r.method == "GET"
                    && (r.path.ends_with("/notes") || r.path.contains("/postings/")))
        })
        .map(|r| format!("{} {} → {}", r.method, r.path, r.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn certn_and_justifacts_run_with_exactly_the_documented_keys_and_read_no_notes_or_postings() {
    // The stack generates each integration's API key with exactly the docs' permissions
    // (CERTN_KEY: seed 001's key; JUSTIFACTS_KEY: that plus notes write).
    let s = stack("grants", |o| {
        o.justifacts = Some(JustifactsOptions {
            step_delay: Some(Duration::from_millis(200)),
            ..JustifactsOptions::default()
        })
    })
    .await;

    // Certn: a posting whose tag selects a package (seed 000's tip) — the tag reaches the
    // candidate through Lever, not through a posting read.
    let posting = s.lever.add_posting("Driver", &["Premium"]);
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    let done = s
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(done.links.len(), 1);
    let apps = s.certn.applications();
    assert_eq!(apps.len(), 1);
    assert_eq!(
        apps[0].package, "Premium",
        "the posting's tag chose the package"
    );

    // Justifacts: the package tag on the posting, a secret note with the result URL at the end.
    let jf = s.justifacts.as_ref().unwrap();
    let jf_posting = jf
        .lever
        .add_posting("Warehouse", &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"]);
    let jf_opp = jf.lever.add_opportunity(NewOpportunity {
        name: "Katherine Johnson".into(),
        emails: vec!["kj@example.com".into()],
        posting_id: Some(jf_posting),
        ..NewOpportunity::default()
    });
    let stage = jf.lever.stage_id(TRIGGER).unwrap();
    assert_eq!(jf.lever.move_to_stage(&jf_opp, &stage).await.unwrap(), 200);
    let jf_done = wait_for(&jf.lever, &jf_opp, LONG, |o| {
        o.tags.contains(&"(Justifacts)Complete".to_string()) && !o.notes.is_empty()
    })
    .await
    .unwrap();
    assert_eq!(jf_done.notes.len(), 1, "the result note, once");
    assert!(jf_done.notes[0].secret);
    assert_eq!(jf.sim.order_list()[0].package_code, "13558");

    all_done(&s, switchyard_testkit::CERTN, LONG).await;
    all_done(&s, switchyard_testkit::JUSTIFACTS, LONG).await;
    assert_eq!(outside_the_smallest_grant(&s.lever), Vec::<String>::new());
    assert_eq!(outside_the_smallest_grant(&jf.lever), Vec::<String>::new());
}
