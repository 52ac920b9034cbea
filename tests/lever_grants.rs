//! Lever permissions (docs/lever.md): the flows run with exactly the documented grant, and a
//! missing permission makes the event wait, named, until someone grants it.

use std::time::Duration;

use reqwest::StatusCode;
use switchyard::config::Secret;
use switchyard::store::{EventState, WaitFor};
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_sim::lever::{LeverSim, NewOpportunity};
use switchyard_testkit::{wait_for, Stack, CERTN, TRIGGER};
use switchyard_tests::support_admin::{Admin, TOKEN};
use switchyard_tests::{all_done, certn_complete, eventually, lever_of, options, stack};

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
    // (CERTN_KEY: seed 001's key; JUSTIFACTS_KEY: that plus notes write and read).
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
    let done = certn_complete(&s, &opp, LONG).await;
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

    all_done(&s, CERTN, LONG).await;
    all_done(&s, switchyard_testkit::JUSTIFACTS, LONG).await;
    assert_eq!(outside_the_smallest_grant(&s.lever), Vec::<String>::new());
    assert_eq!(outside_the_smallest_grant(&jf.lever), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_missing_a_permission_waits_naming_it_until_granted_then_a_retry_invites_once() {
    let mut opts = options("grant-missing", |o| o.certn.step_delay = None);
    opts.worker.recheck_secs = 3_600;
    let mut s = Stack::prepare(opts).await.unwrap();
    s.config.server.admin_token = Some(Secret::new(TOKEN));
    let s = s.run().await.unwrap();
    let admin = Admin::new(&s, Some(TOKEN));
    // The admin generated the key without "Opportunities: write".
    let key = lever_of(&s.config.integrations[0])
        .api_key
        .as_ref()
        .unwrap()
        .expose()
        .to_string();
    s.lever
        .set_api_key_permissions(&key, &["opportunities:read:admin", "stages:read:admin"]);

    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    assert_eq!(s.move_to(&opp, TRIGGER).await.unwrap(), 200);
    // The invitation went out; writing the status tag back was refused: the event waits, named.
    let event = eventually("the event waits", LONG, || {
        let events = s.host().app.store.events(CERTN, 10).ok()?;
        events.into_iter().find(|e| e.state == EventState::Waiting)
    })
    .await;
    assert_eq!(event.waiting_for, Some(WaitFor::Permission));
    let reason = event.last_error.clone().unwrap_or_default();
    assert!(reason.contains("opportunities:write:admin"), "{reason}");
    assert!(
        reason.contains("POST /opportunities/:id/addTags"),
        "{reason}"
    );
    assert!(!reason.contains(&key), "the key never shows");
    let (status, body) = admin
        .get(&format!("/admin/events?integration={CERTN}&state=waiting"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"][0]["waiting_for"], "permission", "{body}");
    // The integration needs attention, with the permission named.
    let (_, view) = admin.get(&format!("/admin/integrations/{CERTN}")).await;
    let health = &view["health"];
    assert_eq!(health["status"], "attention", "{view}");
    let problem = &health["problems"][0];
    assert_eq!(problem["kind"], "permission", "{health}");
    let message = problem["message"].as_str().unwrap_or_default();
    assert!(message.contains("opportunities:write:admin"), "{message}");
    assert_eq!(s.certn.applications().len(), 1);
    assert!(s.lever.opportunity(&opp).unwrap().tags.is_empty());
    assert_eq!(s.lever.forbidden_api_calls(), 1);

    // The admin ticks the box; an operator's "retry now" writes the status, invites nobody again.
    assert!(s
        .lever
        .grant_api_key_permission(&key, "opportunities:write:admin"));
    let (status, body) = admin
        .post(&format!("/admin/events/{}/retry", event.id), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    s.wait_for(&opp, LONG, |o| o.tags == ["CERTN - Pending"])
        .await
        .unwrap();
    all_done(&s, CERTN, LONG).await;
    assert_eq!(s.certn.applications().len(), 1, "exactly one invitation");
    assert_eq!(
        s.lever.forbidden_api_calls(),
        1,
        "the waiting event was not retried on its own"
    );
}
