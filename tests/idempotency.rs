//! Host-owned idempotency (contract 0.2.1): the host records a screening's order with its
//! idempotency key and never calls `start-screening` again for that key, and the connector's
//! screening-scoped `state` goes in the same transaction. So a replayed trigger invites nobody,
//! and a current connector's state stays the same size however many screenings run.

use std::time::Duration;

use switchyard::store::{EventState, NewNote, Order, StatusRecord};
use switchyard::wasm::connector::ScreeningRequest;
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::{all_done, certn_tags, eventually, stack};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_trigger_after_its_order_is_recorded_invites_nobody_and_leaves_no_state() {
    // A vendor without idempotency keys: a second call of the connector would invite again.
    let s = stack("replay-trigger", |o| o.certn.ignore_idempotency_keys = true).await;
    let opp = s.candidate("Ada Lovelace", Some("ada@example.com"), &[], None);
    s.move_to(&opp, TRIGGER).await.unwrap();
    s.wait_for(&opp, LONG, |o| {
        o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
    })
    .await
    .unwrap();
    let events = all_done(&s, CERTN, LONG).await;
    let store = &s.host().app.store;
    assert_eq!(
        store.kv_usage(CERTN, "certn", "").unwrap(),
        0,
        "the screening's intent and order went when the host recorded the order"
    );

    // The operator replays the finished trigger: same payload, so the same idempotency key.
    let trigger = events
        .iter()
        .find(|e| e.kind != switchyard::flow::VENDOR_STATUS)
        .expect("the trigger event");
    let replay = match store
        .enqueue(
            CERTN,
            &trigger.kind,
            "replay-of-the-trigger",
            &trigger.payload,
        )
        .unwrap()
    {
        switchyard::store::Enqueued::New(id) => id,
        other => panic!("not queued: {other:?}"),
    };
    eventually("the replay done", LONG, || {
        let e = store.event(replay).ok()??;
        (e.state == EventState::Done).then_some(())
    })
    .await;
    assert_eq!(
        s.certn.invite_requests(),
        1,
        "the vendor was not called again"
    );
    assert_eq!(s.certn.applications().len(), 1);
    let opp = s.lever.opportunity(&opp).unwrap();
    assert_eq!(
        certn_tags(&opp),
        vec!["CERTN - Complete"],
        "the replay did not bring back the first status"
    );
    assert_eq!(store.kv_usage(CERTN, "certn", "").unwrap(), 0);
}

/// How many screenings, and how many at once (the state of those in flight is what the quota
/// must hold at a time).
const SCREENINGS: usize = 5_000;
const AT_ONCE: usize = 16;
/// Far below what 5,000 kept orders would need (~80 bytes each): only the screenings in flight
/// fit.
const QUOTA: usize = 8 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_current_connector_keeps_its_state_constant_over_thousands_of_screenings() {
    let s = stack("constant-state", |o| {
        o.runtime.limits.state_total_bytes = QUOTA;
        // No callbacks: only starts run here.
        o.certn.step_delay = None;
    })
    .await;
    let app = s.host().app.clone();
    let integration = app.integration(CERTN).expect("the Certn integration");
    let connector = app.connector(&integration).expect("Certn is loaded");
    let runtime = app.registry.runtime().clone();
    let baseline = app.store.kv_usage(CERTN, "certn", "").unwrap();

    // What `flow::start` does for each: the connector's start-screening, then the order with
    // its first status and the request's key, in one write.
    let screen = |i: usize| {
        let (app, integration, connector, runtime) = (
            app.clone(),
            integration.clone(),
            connector.clone(),
            runtime.clone(),
        );
        async move {
            let key = format!("lever:tok-{i}");
            let request = ScreeningRequest {
                idempotency_key: key.clone(),
                name: format!("Candidate {i}"),
                emails: vec![format!("c{i}@example.com")],
                phones: vec![],
                opportunity_id: format!("opp-{i}"),
                opportunity_tags: vec![],
                posting_id: None,
                posting_name: None,
                posting_tags: vec![],
                stage: Some(TRIGGER.into()),
                package: None,
            };
            let ctx = app.call_context(&integration, &connector);
            let started = connector
                .start_screening(&runtime, ctx, &request)
                .await
                .unwrap_or_else(|e| panic!("screening {i}: {e}"));
            let order_ref = started.order_ref.expect("Certn names its order");
            let status = started.status;
            app.store
                .record_status(StatusRecord {
                    order: Order {
                        integration: CERTN.into(),
                        order_ref,
                        connector: "certn".into(),
                        opportunity_id: request.opportunity_id,
                        seq: 0,
                        state: status.state,
                        label: status.label,
                        report_url: status.report_url,
                        score: status.score,
                        verdict: None,
                    },
                    verdict: None,
                    seq: i as i64,
                    note: status.note.map(|n| NewNote {
                        text: n.text,
                        secret: n.secret,
                    }),
                    idempotency_key: Some(key),
                })
                .await
                .unwrap();
        }
    };
    let mut done = 0;
    while done < SCREENINGS {
        let mut batch: tokio::task::JoinSet<()> = (done..done + AT_ONCE).map(screen).collect();
        while let Some(joined) = batch.join_next().await {
            joined.expect("a screening panicked");
        }
        done += AT_ONCE;
        assert_eq!(
            app.store.kv_usage(CERTN, "certn", "").unwrap(),
            baseline,
            "state bytes after {done} screenings"
        );
    }
    assert_eq!(
        s.certn.applications().len(),
        done,
        "each screening invited once"
    );
}
