//! Issue 22's multi-host test: three `switchyard serve` processes on one PostgreSQL database
//! behind a loopback load balancer ([`Cluster`]), Lever's signed webhooks and Certn's callbacks
//! spread over them, one host killed with SIGKILL mid-load and restarted, a new Certn connector
//! version uploaded and activated through another host mid-load. Certn ignores idempotency keys,
//! so a second invitation would show. PostgreSQL only: without `SWITCHYARD_TEST_PG_URL` it fails
//! (`scripts/pg.sh start`), it never skips.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use switchyard::store::{EventState, Store};
use switchyard_testkit::{Cluster, Stack, CERTN, TRIGGER};
use switchyard_tests::host_process::binary;
use switchyard_tests::support_admin::{connectors_dir, plugin, variant, Admin, Body};
use switchyard_tests::{certn_tags, eventually};

/// Candidates moved to the trigger stage, in three waves: before the kill, while one host is
/// down and the new version is being rolled out, after it is active everywhere.
const WAVES: [usize; 3] = [30, 30, 30];
/// The host killed with SIGKILL, and the one the new version is uploaded through.
const KILLED: usize = 0;
const UPLOADER: usize = 1;
const DRAIN: Duration = Duration::from_secs(240);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_on_one_postgres_through_a_kill_and_an_upload_process_every_webhook_once() {
    let connectors = tempfile::Builder::new()
        .prefix("sy-multihost-")
        .tempdir()
        .expect("temp dir");
    let dir = connectors_dir(connectors.path(), &["certn"]);
    let mut cluster = Cluster::start(&binary(), &dir, 3, |o| {
        o.certn.ignore_idempotency_keys = true;
        o.certn.step_delay = Some(Duration::from_millis(400));
        // Callbacks outlive a host's restart (the balancer skips it meanwhile anyway).
        o.certn.callback_retry_base = Duration::from_millis(1000);
        // A dead host's claims go back to the queue within seconds.
        o.worker.lease_secs = 3;
        o.worker.retry_base_ms = 200;
        o.worker.retry_max_ms = 1000;
        o.worker.max_attempts = 50;
    })
    .await
    .expect("three hosts start on one database");
    let stack = &cluster.stack;
    stack
        .lever
        .set_webhook_retry_base(Duration::from_millis(500));
    let total: usize = WAVES.iter().sum();
    let opps = stack.candidates(total, "Candidate", "cand");
    let (first, rest) = opps.split_at(WAVES[0]);
    let (second, third) = rest.split_at(WAVES[1]);

    // Wave 1 on three hosts; then host 0 dies mid-load while wave 2 is sent and the new
    // version is uploaded through host 1.
    let sending = send_wave(stack, first);
    eventually("a third of wave 1 acknowledged", DRAIN, || {
        (accepted(stack).len() >= WAVES[0] / 3).then_some(())
    })
    .await;
    cluster.kill(KILLED).expect("kill -9 host 0");
    sending.await;
    let sending = send_wave(&cluster.stack, second);
    let admin = Admins::new(&cluster);
    let new_tag = admin.upload_and_activate(UPLOADER).await;
    sending.await;
    let killed_at = Instant::now();
    cluster.restart(KILLED).await.expect("host 0 restarts");
    eprintln!("host {KILLED} back in {:.2?}", killed_at.elapsed());

    let mut problems = Vec::new();
    // The new version serving on every host (the others learn of it through the database).
    let everywhere = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut tags = Vec::new();
            for i in 0..cluster.len() {
                tags.push(admin.active(i).await);
            }
            if tags.iter().all(|t| *t == new_tag) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let mut active = Vec::new();
    for i in 0..cluster.len() {
        active.push(admin.active(i).await);
    }
    if everywhere.is_err() {
        problems.push(format!(
            "{new_tag} (uploaded through host {UPLOADER}) not active on every host within 30 s: {active:?}"
        ));
    }
    let activated_ms = now_ms();

    // Wave 3 after the version is active everywhere: its events must all record it.
    send_wave(&cluster.stack, third).await;
    let stack = &cluster.stack;
    let accepted = accepted(stack);
    let store = Store::open_postgres(&cluster.database, None).expect("open the shared database");
    drained(stack, &store, &accepted).await;
    eprintln!(
        "{} of {total} moves acknowledged; balancer connections per host: {:?}",
        accepted.len(),
        cluster.connections()
    );
    if accepted.len() != total {
        problems.push(format!(
            "only {} of {total} webhooks acknowledged (Lever retries; the balancer skips a dead host)",
            accepted.len()
        ));
    }
    if cluster.connections().contains(&0) {
        problems.push(format!(
            "the balancer did not reach every host: {:?}",
            cluster.connections()
        ));
    }

    // Nothing lost, nothing dead.
    let events = store.events(CERTN, 100_000).expect("events");
    let unfinished: Vec<_> = events
        .iter()
        .filter(|e| e.state != EventState::Done && e.state != EventState::Skipped)
        .map(|e| (e.id, e.state, e.last_error.clone()))
        .collect();
    if !unfinished.is_empty() {
        problems.push(format!("events not done: {unfinished:?}"));
    }
    // Exactly once in effect, counted at the simulators.
    problems.extend(exactly_once(stack, &opps, &accepted));
    // Events received after the version was active everywhere ran on it. Lever's only: a
    // vendor callback keeps the version that parsed it, which may have started before its host
    // switched and been stored after (a call keeps the version it started with).
    let stale: Vec<_> = events
        .iter()
        .filter(|e| e.received_at_ms > activated_ms && e.kind != switchyard::flow::VENDOR_STATUS)
        .filter(|e| e.connector_version.as_deref() != Some(new_tag.as_str()))
        .map(|e| (e.id, e.connector_version.clone()))
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "{} events received after {new_tag} was active everywhere ran on another version: {:?}",
            stale.len(),
            &stale[..stale.len().min(5)]
        ));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Moves `opps` to the trigger stage, ten at a time (so that Lever opens several connections,
/// which the balancer spreads), whatever the hosts' state.
fn send_wave(stack: &Stack, opps: &[String]) -> impl std::future::Future<Output = ()> {
    let lever = Arc::new(stack.lever.clone());
    let stage = stack.lever.stage_id(TRIGGER).expect("the trigger stage");
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opps.chunks(opps.len().div_ceil(10).max(1)) {
        let (chunk, lever, stage) = (chunk.to_vec(), lever.clone(), stage.clone());
        senders.spawn(async move {
            for opp in chunk {
                // A failed first attempt is retried by Lever in the background.
                let _ = lever.move_to_stage(&opp, &stage).await;
            }
        });
    }
    async move { while senders.join_next().await.is_some() {} }
}

/// Opportunities whose stage-change webhook got a 200 on some attempt (Lever's view).
fn accepted(stack: &Stack) -> BTreeSet<String> {
    stack
        .lever
        .deliveries()
        .iter()
        .filter(|d| d.attempts.contains(&200))
        .filter_map(|d| {
            serde_json::from_str::<Value>(&d.body)
                .ok()
                .and_then(|b| b["data"]["opportunityId"].as_str().map(str::to_string))
        })
        .collect()
}

/// Waits (bounded) until nothing is queued and every accepted candidate is Complete at Lever.
async fn drained(stack: &Stack, store: &Store, accepted: &BTreeSet<String>) {
    eventually(
        "every accepted candidate complete, queue empty",
        DRAIN,
        || {
            let complete = accepted.iter().all(|o| {
                stack
                    .lever
                    .opportunity(o)
                    .is_some_and(|opp| certn_tags(&opp) == ["CERTN - Complete"])
            });
            (complete && store.queue_depth().ok()? == 0).then_some(())
        },
    )
    .await;
}

/// One invitation per candidate at Certn; each tag, link and note written once at Lever.
fn exactly_once(stack: &Stack, opps: &[String], accepted: &BTreeSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let twice = stack.certn.emails_invited_more_than_once();
    if !twice.is_empty() {
        problems.push(format!("invited twice at Certn: {twice:?}"));
    }
    for (i, opp) in opps.iter().enumerate() {
        let n = stack
            .certn
            .invitations_for_email(&format!("cand{i}@example.com"));
        if accepted.contains(opp) && n != 1 {
            problems.push(format!("{opp}: {n} invitations"));
        }
    }
    let mut writes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in stack.lever.request_log() {
        if r.method != "POST" || !(200..300).contains(&r.status) {
            continue;
        }
        let opp = r.path.split('/').nth(3).unwrap_or_default().to_string();
        if r.path.ends_with("/addTags") {
            for tag in r.body["tags"].as_array().into_iter().flatten() {
                let tag = tag.as_str().unwrap_or_default();
                *writes
                    .entry((opp.clone(), format!("tag {tag}")))
                    .or_default() += 1;
            }
        } else if r.path.ends_with("/addLinks") {
            for link in r.body["links"].as_array().into_iter().flatten() {
                let link = link.as_str().unwrap_or_default();
                *writes
                    .entry((opp.clone(), format!("link {link}")))
                    .or_default() += 1;
            }
        } else if r.path.ends_with("/notes") {
            let note = r.body["value"].as_str().unwrap_or_default();
            *writes
                .entry((opp.clone(), format!("note {note}")))
                .or_default() += 1;
        }
    }
    let repeated: Vec<_> = writes.iter().filter(|(_, n)| **n > 1).collect();
    if !repeated.is_empty() {
        problems.push(format!("written twice at Lever: {repeated:?}"));
    }
    for opp in accepted {
        let Some(o) = stack.lever.opportunity(opp) else {
            problems.push(format!("{opp}: gone from Lever"));
            continue;
        };
        if certn_tags(&o).len() != 1 || o.links.len() != 1 {
            problems.push(format!(
                "{opp}: tags {:?}, links {:?} (one status tag, one report link)",
                o.tags, o.links
            ));
        }
    }
    problems
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The admin API of each host, bypassing the balancer.
struct Admins(Vec<Admin>);

impl Admins {
    fn new(cluster: &Cluster) -> Admins {
        Admins(
            (0..cluster.len())
                .map(|i| Admin::at(cluster.url(i), Some(&cluster.admin_token)))
                .collect(),
        )
    }

    /// Uploads a new Certn version (the built component with a marker section: another hash)
    /// through host `i` and activates it; returns its tag.
    async fn upload_and_activate(&self, i: usize) -> String {
        let bytes = variant(&plugin("certn"), "multihost");
        let (status, body) = self.0[i]
            .post(
                "/admin/connectors/certn/versions?activate=true",
                Some(Body::Bytes(bytes)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let tag = self.active(i).await;
        let hash = body["version"]["hash"].as_str().unwrap_or_default();
        assert!(
            !hash.is_empty() && tag.ends_with(&hash[..12.min(hash.len())]),
            "host {i} serves the upload: {tag} vs {body}"
        );
        tag
    }

    /// The tag of the Certn version host `i` serves.
    async fn active(&self, i: usize) -> String {
        self.0[i].active("certn").await
    }
}
