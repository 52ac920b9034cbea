//! A host serving many customers (issue 25, item 5): with 2,000 integrations configured it
//! starts, routes a webhook to the integration its path names (and no other), and serves the
//! integrations with queued events in turn, so a customer's backlog does not hold up another's
//! events.

use std::time::Duration;

use switchyard::ats::lever::{signature, LEVER_STAGE_CHANGE};
use switchyard::store::{EventState, Store};
use switchyard_testkit::Stack;
use switchyard_tests::{eventually, lever_of, options};

const INTEGRATIONS: usize = 2_000;
const TRIGGER: &str = "Fast Stage";
/// Not the trigger stage: each event is skipped after one stage lookup.
const STAGE: &str = "Offer";
/// Events queued for one customer before the host starts.
const BACKLOG: usize = 200;
const LONG: Duration = Duration::from_secs(60);

fn id(n: usize) -> String {
    format!("customer-{n:04}")
}

/// A signed Lever stage change of `opportunity` to `stage_id`, keyed by `token`.
fn webhook(key: &str, token: &str, opportunity: &str, stage_id: &str) -> String {
    let at = switchyard::clock::now_ms();
    serde_json::json!({
        "event": "candidateStageChange",
        "triggeredAt": at,
        "token": token,
        "signature": signature::sign(key, token, at),
        "data": {"opportunityId": opportunity, "toStageId": stage_id},
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_thousand_integrations_start_route_and_are_served_in_turn() {
    let opts = options("many-integrations", |o| {
        o.extra = (0..INTEGRATIONS)
            .map(|n| (id(n), "misbehave".to_string(), TRIGGER.to_string()))
            .collect();
        // One worker: events are taken strictly one after another, in the dispatcher's order.
        o.worker.concurrency = 1;
    });
    let stack = Stack::prepare(opts).await.expect("stack");
    let stage = stack.lever.stage_id(STAGE).expect("the Offer stage");
    let opportunity = stack.candidate("Many", Some("many@example.com"), &[], None);
    let integrations = stack.config.integrations.clone();
    let key = |n: usize| {
        let config = integrations.iter().find(|i| i.id == id(n));
        lever_of(config.expect("configured"))
            .signature_token
            .expose()
            .to_string()
    };
    // Before the host starts: a backlog for one customer, then one event each for two others.
    {
        let store = Store::open(&stack.config.storage.path).expect("store");
        let backlog = (0..BACKLOG)
            .map(|i| {
                let token = format!("backlog-{i}");
                (
                    format!("lever:{token}"),
                    webhook(&key(7), &token, &opportunity, &stage),
                )
            })
            .collect();
        store
            .enqueue_all_batched(&id(7), LEVER_STAGE_CHANGE, backlog)
            .await
            .expect("backlog queued");
        for n in [1_000, 1_999] {
            let body = webhook(&key(n), "neighbour", &opportunity, &stage);
            store
                .enqueue(&id(n), LEVER_STAGE_CHANGE, "lever:neighbour", &body)
                .expect("neighbour queued");
        }
    }
    let started = std::time::Instant::now();
    let stack = stack.run().await.expect("the host starts");
    eprintln!(
        "started with {} integrations in {:.2?}",
        stack.config.integrations.len(),
        started.elapsed()
    );
    let store = stack.host().app.store.clone();

    // A webhook for customer 1234 is stored under customer 1234 only.
    let body = webhook(&key(1_234), "routed", &opportunity, &stage);
    let response = reqwest::Client::new()
        .post(format!("http://{}/hooks/{}/lever", stack.addr, id(1_234)))
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .expect("webhook sent");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let routed = store.events(&id(1_234), 10).expect("events");
    assert_eq!(routed.len(), 1);
    assert_eq!(routed[0].payload, body);
    // Another customer's signature is refused on this customer's route: nothing stored.
    let forged = webhook(&key(1_235), "forged", &opportunity, &stage);
    let response = reqwest::Client::new()
        .post(format!("http://{}/hooks/{}/lever", stack.addr, id(1_234)))
        .body(forged)
        .send()
        .await
        .expect("webhook sent");
    assert_eq!(response.status(), 401);
    assert_eq!(store.events(&id(1_234), 10).expect("events").len(), 1);
    assert!(store.events(&id(1_235), 10).expect("events").is_empty());

    // Every event ends skipped (not the trigger stage).
    let finished = |n: usize, want: usize| {
        let events = store.events(&id(n), BACKLOG as u32 + 10).ok()?;
        let skipped: Vec<_> = events
            .into_iter()
            .filter(|e| e.state == EventState::Skipped)
            .collect();
        (skipped.len() == want).then_some(skipped)
    };
    let backlog = eventually("the backlog skipped", LONG, || finished(7, BACKLOG)).await;
    let started_at = |event: &switchyard::store::Event| {
        let detail = store
            .event_detail(event.id)
            .expect("detail")
            .expect("event");
        detail.attempts_history[0].started_at_ms
    };
    let mut backlog_starts: Vec<i64> = backlog.iter().map(started_at).collect();
    backlog_starts.sort_unstable();
    // In turn: each neighbour's event, queued after the whole backlog, started before the
    // backlog's third event (round robin over the customers with queued events), not after it.
    for n in [1_000, 1_999] {
        let neighbour = eventually("the neighbour's event skipped", LONG, || finished(n, 1)).await;
        let at = started_at(&neighbour[0]);
        assert!(
            at <= backlog_starts[2],
            "customer {n}'s event started at {at}, after the backlog's third at {}",
            backlog_starts[2]
        );
    }
}
