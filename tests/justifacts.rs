//! Lever → Justifacts (seed 004), through the same host binary and the public contract only.

use std::time::Duration;

use serde_json::json;
use switchyard::config::AtsConfig;
use switchyard_sim::justifacts::{self, JustifactsOptions, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use switchyard_sim::lever::{NewOpportunity, Opportunity};
use switchyard_testkit::{wait_for, Stack, JUSTIFACTS, TRIGGER};
use switchyard_tests::{assert_result_in_secret_note_only, options, stack};

const LONG: Duration = Duration::from_secs(30);
const PENDING: &str = "(Justifacts)In-Progress : Candidate";
const COMPLETE: &str = "(Justifacts)Complete";

async fn jf_stack(name: &str, auto: bool) -> Stack {
    stack(name, |o| {
        o.justifacts = Some(JustifactsOptions {
            step_delay: auto.then(|| Duration::from_millis(200)),
            ..JustifactsOptions::default()
        })
    })
    .await
}

/// Adds a candidate on a posting with `posting_tags`, moves them to Background Check, and returns
/// the opportunity id.
async fn candidate(
    s: &Stack,
    email: Option<&str>,
    posting_tags: &[&str],
    own_tags: &[&str],
) -> String {
    let jf = s.justifacts.as_ref().unwrap();
    let posting = jf.lever.add_posting("Warehouse", posting_tags);
    let opp = jf.lever.add_opportunity(NewOpportunity {
        name: "Katherine Johnson".into(),
        emails: email.map(|e| vec![e.to_string()]).unwrap_or_default(),
        tags: own_tags.iter().map(|t| t.to_string()).collect(),
        posting_id: Some(posting),
        ..NewOpportunity::default()
    });
    let stage = jf.lever.stage_id(TRIGGER).unwrap();
    assert_eq!(jf.lever.move_to_stage(&opp, &stage).await.unwrap(), 200);
    opp
}

fn jf_tags(o: &Opportunity) -> Vec<String> {
    o.tags
        .iter()
        .filter(|t| t.starts_with("(Justifacts)"))
        .cloned()
        .collect()
}

async fn wait(s: &Stack, opp: &str, done: impl Fn(&Opportunity) -> bool) -> Opportunity {
    wait_for(&s.justifacts.as_ref().unwrap().lever, opp, LONG, done)
        .await
        .unwrap()
}

/// A candidate with an email on a posting tagged with a package, screened until Complete with
/// its note: the opportunity id and its last snapshot.
async fn screened_to_complete(s: &Stack) -> (String, Opportunity) {
    let opp = candidate(
        s,
        Some("kj@example.com"),
        &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"],
        &[],
    )
    .await;
    let done = wait(s, &opp, |o| {
        o.tags.contains(&COMPLETE.to_string()) && !o.notes.is_empty()
    })
    .await;
    (opp, done)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_full_flow_ends_complete_with_a_secret_note_holding_the_result_url() {
    let s = jf_stack("jf-happy", true).await;
    let jf = s.justifacts.as_ref().unwrap();
    let (_, done) = screened_to_complete(&s).await;

    let orders = jf.sim.order_list();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].package_code, "13558");
    assert_eq!(orders[0].applicant.email, "kj@example.com");
    assert_eq!(jf_tags(&done), vec![COMPLETE], "one status tag at a time");
    let url = orders[0].result_url.clone().unwrap();
    assert_result_in_secret_note_only(&done, &url);
    assert!(done.notes[0].value.contains("Clear"), "{:?}", done.notes);
    // Every documented tag was shown on the way, each added once.
    let log = jf.lever.request_log();
    for label in [PENDING, "(Justifacts)In-Progress: Justifacts", COMPLETE] {
        let adds = log
            .iter()
            .filter(|r| r.path.ends_with("/addTags") && r.body["tags"][0] == label)
            .count();
        assert_eq!(adds, 1, "{label}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_note_whose_answer_was_lost_is_written_exactly_once() {
    let s = jf_stack("jf-lost-note", true).await;
    let jf = s.justifacts.as_ref().unwrap();
    // Lever creates the result note but its answer never arrives (a timeout, a 5xx).
    jf.lever.lose_next_note_answers(1);
    let (opp, done) = screened_to_complete(&s).await;
    // The retry looked it up instead of writing it again: one note, one POST, one read.
    switchyard_tests::eventually("the note's event is done", LONG, || {
        let store = &s.host().app.store;
        let pending = store.unwritten_notes(JUSTIFACTS, &opp).unwrap();
        pending.is_empty().then_some(())
    })
    .await;
    let done = jf.lever.opportunity(&done.id).unwrap();
    assert_eq!(done.notes.len(), 1, "{:?}", done.notes);
    let log = jf.lever.request_log();
    let posts = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/notes"))
        .count();
    let reads = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/notes"))
        .count();
    assert_eq!((posts, reads), (1, 1));
}

#[tokio::test(flavor = "multi_thread")]
async fn package_tags_are_read_tolerantly_and_strictly() {
    let s = jf_stack("jf-tags", false).await;
    let jf = s.justifacts.as_ref().unwrap();
    let loose = candidate(
        &s,
        Some("a@example.com"),
        &["justifacts bgc pkg:EmpCod[ID:777]"],
        &[],
    )
    .await;
    let on_candidate = candidate(
        &s,
        Some("b@example.com"),
        &[],
        &["JUSTIFACTS BGC PKG : EmpCod [ ID : 42 ]"],
    )
    .await;
    let none = candidate(&s, Some("c@example.com"), &["Warehouse"], &[]).await;
    let two = candidate(
        &s,
        Some("d@example.com"),
        &[
            "JUSTIFACTS BGC PKG: EmpCod[ID : 1]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 2]",
        ],
        &[],
    )
    .await;
    let bad = candidate(
        &s,
        Some("e@example.com"),
        &["JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]"],
        &[],
    )
    .await;

    for (opp, label) in [
        (&loose, PENDING),
        (&on_candidate, PENDING),
        (&none, "(Justifacts)ERROR (No Package Tag)"),
        (&two, "(Justifacts)ERROR (Conflicting Package Tags)"),
        (&bad, "(Justifacts)ERROR (Invalid Package Tag)"),
    ] {
        // The error's note is written right after its tag: wait for both.
        let o = wait(&s, opp, |o| {
            !jf_tags(o).is_empty() && (label == PENDING || !o.notes.is_empty())
        })
        .await;
        assert_eq!(jf_tags(&o), vec![label]);
        if label != PENDING {
            assert_eq!(o.notes.len(), 1, "a note tells the recruiter what to fix");
            assert!(
                o.notes[0].value.contains("JUSTIFACTS BGC PKG"),
                "{}",
                o.notes[0].value
            );
        }
    }
    let mut codes: Vec<String> = jf
        .sim
        .order_list()
        .into_iter()
        .map(|o| o.package_code)
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        vec!["42", "777"],
        "no vendor call for a missing, conflicting or bad tag"
    );
}

/// Seed 004 triggers on "Background Check", but a customer may pick another stage: the fix
/// notes send the recruiter to the integration's own trigger stage.
#[tokio::test(flavor = "multi_thread")]
async fn fix_notes_name_the_integrations_own_trigger_stage() {
    let mut s = Stack::prepare(options("jf-stage", |o| {
        o.justifacts = Some(JustifactsOptions::default())
    }))
    .await
    .unwrap();
    let jf_config = s
        .config
        .integrations
        .iter_mut()
        .find(|i| i.id == JUSTIFACTS)
        .unwrap();
    if let AtsConfig::Lever(l) = &mut jf_config.ats {
        l.trigger_stage = Some("Verification".into());
    }
    let stage = s
        .justifacts
        .as_ref()
        .unwrap()
        .lever
        .add_stage("Verification");
    let s = s.run().await.unwrap();
    let jf = s.justifacts.as_ref().unwrap();
    let posting = jf.lever.add_posting("Warehouse", &[]);
    let opp = jf.lever.add_opportunity(NewOpportunity {
        name: "Mary Jackson".into(),
        emails: vec!["mj@example.com".into()],
        posting_id: Some(posting),
        ..NewOpportunity::default()
    });
    assert_eq!(jf.lever.move_to_stage(&opp, &stage).await.unwrap(), 200);
    let o = wait(&s, &opp, |o| !o.notes.is_empty()).await;
    assert_eq!(jf_tags(&o), vec!["(Justifacts)ERROR (No Package Tag)"]);
    let note = &o.notes[0].value;
    assert!(
        note.contains("then move the candidate to Verification again."),
        "{note}"
    );
    assert!(!note.contains("Background Check"), "{note}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_email_is_an_error_status_and_no_order() {
    let s = jf_stack("jf-noemail", false).await;
    let opp = candidate(&s, None, &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"], &[]).await;
    let o = wait(&s, &opp, |o| !jf_tags(o).is_empty()).await;
    assert_eq!(jf_tags(&o), vec!["(Justifacts)ERROR (No Email)"]);
    assert_eq!(s.justifacts.as_ref().unwrap().sim.order_requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_badly_signed_callback_is_refused_and_redelivered_callbacks_add_no_second_note() {
    let s = jf_stack("jf-callbacks", false).await;
    let jf = s.justifacts.as_ref().unwrap();
    let opp = candidate(
        &s,
        Some("kj@example.com"),
        &["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"],
        &[],
    )
    .await;
    wait(&s, &opp, |o| o.tags.contains(&PENDING.to_string())).await;
    let order = jf.sim.order_list()[0].order_id.clone();

    // A forged "Complete" signed with the wrong secret.
    let body = json!({
        "event_id": "evt_forged", "event": "order.status_changed", "order_id": order, "reference": opp,
        "status": "Complete", "result": "Clear", "result_url": "https://evil.example/r",
        "occurred_at": "2026-11-23T00:00:00Z",
    })
    .to_string();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = reqwest::Client::new()
        .post(format!("http://{}/hooks/{JUSTIFACTS}/vendor", s.addr))
        .header(TIMESTAMP_HEADER, now.to_string())
        .header(
            SIGNATURE_HEADER,
            justifacts::sign("not-the-secret", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = jf.lever.opportunity(&opp).unwrap();
    assert_eq!(jf_tags(&o), vec![PENDING], "nothing changed");
    assert!(o.notes.is_empty() && o.links.is_empty());

    jf.sim.advance(&order).await.unwrap();
    jf.sim.advance(&order).await.unwrap();
    wait(&s, &opp, |o| {
        o.tags.contains(&COMPLETE.to_string()) && !o.notes.is_empty()
    })
    .await;
    assert_eq!(jf.sim.resend_last_callback(&order).await.unwrap(), 200);
    assert_eq!(jf.sim.resend_last_callback(&order).await.unwrap(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let o = jf.lever.opportunity(&opp).unwrap();
    assert_eq!(o.notes.len(), 1, "one note despite redelivered callbacks");
    let note_posts = jf
        .lever
        .request_log()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/notes"))
        .count();
    assert_eq!(note_posts, 1);
}
