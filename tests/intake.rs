//! Intake under group commit, with `switchyard serve` as a separate process: killed with
//! SIGKILL while batches of webhooks are being written, it has lost no acknowledged webhook and
//! holds no partial one; a write that fails (injected through a trigger) is answered 503, a
//! batch that cannot commit answers 503 to all of its requests, and nothing of other requests
//! is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::ats::lever::LEVER_STAGE_CHANGE;
use switchyard::store::Store;
use switchyard_testkit::{Stack, CERTN};
use switchyard_tests::host_process::{serve, write_config};
use switchyard_tests::{lever_of, options};

/// Concurrent senders, each with its own bounded list of webhooks.
const SENDERS: usize = 16;
const PER_SENDER: usize = 150;
/// Acknowledgements to wait for before the kill (the senders keep sending meanwhile).
const KILL_AFTER: usize = 400;

/// A distinct signed Lever stage change (to a stage the integration does not act on): its
/// token and body. `mark` goes into the opportunity id (the poison tests match on it).
fn webhook(stack: &Stack, n: usize, mark: &str) -> (String, String) {
    let signing = lever_of(&stack.config.integrations[0])
        .signature_token
        .expose()
        .to_string();
    let token = format!("{n:048x}");
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let body = json!({
        "id": format!("hook-{n}"),
        "triggeredAt": at,
        "event": "candidateStageChange",
        "token": token,
        "signature": switchyard_sim::lever::sign(&signing, &token, at),
        "data": {"opportunityId": format!("opp-{mark}-{n}"), "toStageId": "stage-not-acted-on"},
    })
    .to_string();
    (token, body)
}

/// Posts one webhook; the status and the JSON answer, or None if the host did not answer.
async fn post(http: &reqwest::Client, stack: &Stack, body: &str) -> Option<(u16, Value)> {
    let r = http
        .post(format!("http://{}/hooks/{CERTN}/lever", stack.addr))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Stored Lever webhooks: token → payload.
fn stored(store: &Store) -> BTreeMap<String, String> {
    store
        .events(CERTN, 100_000)
        .expect("events")
        .into_iter()
        .filter(|e| e.kind == LEVER_STAGE_CHANGE)
        .map(|e| {
            let body: Value = serde_json::from_str(&e.payload)
                .unwrap_or_else(|err| panic!("a stored payload does not parse ({err}): {e:?}"));
            let token = body["token"].as_str().expect("a token").to_string();
            (token, e.payload)
        })
        .collect()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_while_batches_are_written_every_acknowledged_webhook_is_whole_in_the_store() {
    let dir = switchyard_tests::scratch("intake-kill");
    let stack = Stack::prepare(options("intake-kill", |o| o.data_dir = dir.to_path_buf()))
        .await
        .expect("stack");
    let config = write_config(&stack, &dir, "concurrency = 2");
    let mut host = serve(&config, stack.addr).await;

    let sent: BTreeMap<String, String> = (0..SENDERS * PER_SENDER)
        .map(|n| webhook(&stack, n, "kill"))
        .collect();
    let stack = Arc::new(stack);
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let mut senders = tokio::task::JoinSet::new();
    let hooks: Vec<(String, String)> = sent.clone().into_iter().collect();
    for chunk in hooks.chunks(PER_SENDER) {
        let (chunk, stack, acked, http) = (chunk.to_vec(), stack.clone(), acked.clone(), http());
        senders.spawn(async move {
            for (token, body) in chunk {
                match post(&http, &stack, &body).await {
                    Some((200, answer)) => {
                        assert_eq!(answer["status"], "accepted", "{answer}");
                        acked.lock().unwrap().insert(token);
                    }
                    Some((status, answer)) => panic!("{status} {answer}"),
                    // Killed: this one and the rest are unacknowledged.
                    None => return,
                }
            }
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < KILL_AFTER {
        assert!(Instant::now() < deadline, "too few acknowledgements");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    host.kill().expect("kill -9");
    host.wait().expect("reap");
    while let Some(r) = senders.join_next().await {
        r.expect("sender");
    }
    drop(host);

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() < sent.len(),
        "the kill came while webhooks were still being sent"
    );
    let store = Store::open(&stack.config.storage.path).expect("the store opens after SIGKILL");
    let stored = stored(&store);
    for token in &acked {
        assert_eq!(
            stored.get(token),
            Some(&sent[token]),
            "an acknowledged webhook is stored, whole"
        );
    }
    for (token, payload) in &stored {
        assert_eq!(
            Some(payload),
            sent.get(token),
            "a stored webhook is exactly one that was sent"
        );
    }
    eprintln!(
        "figure: {} webhooks sent by {SENDERS} senders, killed after {KILL_AFTER}+ acks: {} acknowledged, {} stored ({} stored without their ack)",
        sent.len(),
        acked.len(),
        stored.len(),
        stored.len() - acked.len()
    );
}

/// Triggers that fail one insert (`RAISE(ABORT)`: the write fails alone) or the whole
/// transaction holding it (`RAISE(ROLLBACK)`: its batch cannot commit).
const POISON: &str = "
CREATE TRIGGER poison_write BEFORE INSERT ON event_bodies WHEN NEW.body LIKE '%poison-write%'
BEGIN SELECT RAISE(ABORT, 'injected write failure'); END;
CREATE TRIGGER poison_batch BEFORE INSERT ON event_bodies WHEN NEW.body LIKE '%poison-batch%'
BEGIN SELECT RAISE(ROLLBACK, 'injected batch failure'); END;";

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_write_or_batch_answers_503_to_its_requests_and_loses_nothing_else() {
    let dir = switchyard_tests::scratch("intake-poison");
    let stack = Stack::prepare(options("intake-poison", |o| o.data_dir = dir.to_path_buf()))
        .await
        .expect("stack");
    let config = write_config(&stack, &dir, "concurrency = 2");
    let _host = serve(&config, stack.addr).await;
    let db = rusqlite::Connection::open(&stack.config.storage.path).expect("open the database");
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute_batch(POISON).expect("install the triggers");

    let stack = Arc::new(stack);
    let client = http();
    let (mut accepted, mut refused) = (BTreeMap::new(), Vec::new());
    let mut n = 0;
    // 1. A write that fails is refused alone: every good webhook sent with it is accepted.
    let wave: Vec<_> = (0..80)
        .map(|i| {
            n += 1;
            let mark = if i % 8 == 3 { "poison-write" } else { "good" };
            (webhook(&stack, n, mark), mark)
        })
        .collect();
    for (token, body, mark, status) in send_wave(&client, &stack, wave).await {
        match (mark, status) {
            ("good", 200) => {
                accepted.insert(token, body);
            }
            ("poison-write", 503) => refused.push((token, body)),
            other => panic!("a failed write must fail alone: {other:?}"),
        }
    }
    // 2. A batch that cannot commit refuses every request in it; waves without poison (their
    // own batches: a wave is answered before the next starts) are accepted whole.
    for w in 0..6 {
        let wave: Vec<_> = (0..20)
            .map(|i| {
                n += 1;
                let mark = if w % 3 == 1 && i == 7 {
                    "poison-batch"
                } else {
                    "good"
                };
                (webhook(&stack, n, mark), mark)
            })
            .collect();
        let poisoned = w % 3 == 1;
        for (token, body, mark, status) in send_wave(&client, &stack, wave).await {
            match (mark, status) {
                ("good", 200) => {
                    accepted.insert(token, body);
                }
                ("good", 503) if poisoned => refused.push((token, body)),
                ("poison-batch", 503) => refused.push((token, body)),
                other => panic!("wave {w}: {other:?}"),
            }
        }
    }
    let sent = n;

    let store = Store::open(&stack.config.storage.path).unwrap();
    let in_store = stored(&store);
    for (token, body) in &accepted {
        assert_eq!(in_store.get(token), Some(body), "every 200 is stored");
    }
    for (token, _) in &refused {
        assert!(!in_store.contains_key(token), "nothing of a 503 is stored");
    }
    let metrics = client
        .get(format!("http://{}/metrics", stack.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("switchyard_store_failed_batches_total 0\n"),
        "the failed batches are counted: {metrics}"
    );

    // Storage repaired: every refused webhook, retried, is accepted (none was half there).
    db.execute_batch("DROP TRIGGER poison_write; DROP TRIGGER poison_batch;")
        .unwrap();
    for (token, body) in &refused {
        let (status, answer) = post(&client, &stack, body).await.expect("an answer");
        assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
        assert!(stored(&store).contains_key(token));
    }
    assert_eq!(stored(&store).len(), sent);
    eprintln!(
        "figure: {sent} webhooks (10 failing writes, 2 failing batches): {} accepted at once, {} refused, all accepted on retry",
        accepted.len(),
        refused.len()
    );
}

/// Sends `wave` at once; returns each webhook with its mark and status once all are answered
/// (a 503 must carry the storage error).
async fn send_wave(
    client: &reqwest::Client,
    stack: &Arc<Stack>,
    wave: Vec<((String, String), &'static str)>,
) -> Vec<(String, String, &'static str, u16)> {
    let mut requests = tokio::task::JoinSet::new();
    for ((token, body), mark) in wave {
        let (stack, client) = (stack.clone(), client.clone());
        requests.spawn(async move {
            let (status, answer) = post(&client, &stack, &body).await.expect("an answer");
            match status {
                200 => assert_eq!(answer["status"], "accepted", "{answer}"),
                503 => assert_eq!(answer["error"], "storage unavailable, retry later"),
                _ => {}
            }
            (token, body, mark, status)
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = requests.join_next().await {
        answers.push(r.expect("request"));
    }
    answers
}
