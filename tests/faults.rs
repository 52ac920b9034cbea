//! Faults of the host process itself, with `switchyard serve` run as a separate process: a
//! graceful stop on SIGTERM (503 + Retry-After, events in flight finished or handed back, exit 0)
//! and repeated kill -9 under load with vendor deduplication off (every accepted event processed,
//! no candidate invited twice, no tag or note written twice — counted at the simulators).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use switchyard::store::{EventState, Store};
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::host_process::{serve, write_config, Host};
use switchyard_tests::{certn_tags, eventually, options};

const LONG: Duration = Duration::from_secs(60);

fn sigterm(child: &Host) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
}

/// Waits (bounded) for the process to exit; returns its status and how long it took.
async fn exited(child: &mut Host, within: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < within,
            "the host did not exit within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls a request to the host until it answers 503 (the host is draining); returns Retry-After.
async fn draining_answer(addr: std::net::SocketAddr, integration: &str) -> String {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .post(format!("http://{addr}/hooks/{integration}/lever"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await;
        if let Ok(r) = r {
            if r.status() == 503 {
                return r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the host never answered 503 while stopping"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn running_events(store: &Store) -> Vec<switchyard::store::Event> {
    store
        .list_events(None, Some(EventState::Running), 1000)
        .expect("list")
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_refuses_new_work_finishes_what_is_in_flight_and_exits_zero() {
    let dir = switchyard_tests::scratch("sigterm");
    let stack = Stack::prepare(options("sigterm", |o| {
        o.data_dir = dir.to_path_buf();
    }))
    .await
    .expect("stack");
    let config = write_config(&stack, &dir, "lease_secs = 3\nshutdown_grace_secs = 20");
    let mut host = serve(&config, stack.addr).await;

    // Every invitation takes 1.5 s to be answered: three are in flight when SIGTERM arrives.
    stack.certn.set_latency(Duration::from_millis(1500));
    let opps: Vec<String> = (0..3)
        .map(|i| {
            stack.candidate(
                &format!("C{i}"),
                Some(&format!("c{i}@example.com")),
                &[],
                None,
            )
        })
        .collect();
    for opp in &opps {
        assert_eq!(stack.move_to(opp, TRIGGER).await.unwrap(), 200);
    }
    eventually("three invitations in flight", LONG, || {
        (stack.certn.invite_requests() >= 3).then_some(())
    })
    .await;

    sigterm(&host);
    let sent = Instant::now();
    assert_eq!(
        draining_answer(stack.addr, CERTN).await,
        "5",
        "503 with Retry-After"
    );
    let (status, drained) = exited(&mut host, LONG).await;
    assert!(status.success(), "exit status {status:?}");
    eprintln!("figure: SIGTERM → exit 0 with 3 events in flight (1.5 s vendor): {drained:.2?} (503 seen {:.2?} after the signal)", sent.elapsed().saturating_sub(drained));

    let store = Store::open(&stack.config.storage.path).unwrap();
    assert!(running_events(&store).is_empty(), "nothing left claimed");
    let starts: Vec<_> = store
        .events(CERTN, 100)
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == switchyard::ats::lever::LEVER_STAGE_CHANGE)
        .collect();
    assert_eq!(starts.len(), 3);
    for e in &starts {
        assert_eq!(
            e.state,
            EventState::Done,
            "finished within the grace period: {e:?}"
        );
        assert_eq!(e.attempts, 1);
    }
    assert_eq!(stack.certn.applications().len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_grace_period_events_in_flight_are_handed_back_uncounted_and_finish_after_restart()
{
    let dir = switchyard_tests::scratch("sigterm-release");
    let stack = Stack::prepare(options("sigterm-release", |o| {
        o.data_dir = dir.to_path_buf();
    }))
    .await
    .expect("stack");
    let config = write_config(&stack, &dir, "lease_secs = 3\nshutdown_grace_secs = 1");
    let mut host = serve(&config, stack.addr).await;

    // The vendor answers after 4 s, longer than the 1 s grace period.
    stack.certn.set_latency(Duration::from_secs(4));
    let opp = stack.candidate("Slow", Some("slow@example.com"), &[], None);
    assert_eq!(stack.move_to(&opp, TRIGGER).await.unwrap(), 200);
    eventually("the invitation is in flight", LONG, || {
        (stack.certn.invite_requests() >= 1).then_some(())
    })
    .await;
    sigterm(&host);
    let (status, drained) = exited(&mut host, LONG).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        drained < Duration::from_secs(4),
        "did not wait for the vendor: {drained:?}"
    );
    eprintln!("figure: SIGTERM with a step longer than the 1 s grace: exit 0 after {drained:.2?}");

    let store = Store::open(&stack.config.storage.path).unwrap();
    assert!(running_events(&store).is_empty(), "nothing left claimed");
    let start = store
        .events(CERTN, 10)
        .unwrap()
        .into_iter()
        .find(|e| e.kind == switchyard::ats::lever::LEVER_STAGE_CHANGE)
        .expect("the start event");
    assert_eq!(start.state, EventState::Queued);
    assert_eq!(start.attempts, 0, "the attempt is not burned");
    let detail = store.event_detail(start.id).unwrap().unwrap();
    assert_eq!(
        detail
            .attempts_history
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["released"]
    );
    drop(store);

    stack.certn.set_latency(Duration::ZERO);
    let mut host = serve(&config, stack.addr).await;
    let done = stack
        .wait_for(&opp, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .unwrap();
    assert_eq!(certn_tags(&done), vec!["CERTN - Complete"]);
    // Certn honours idempotency keys here: the redone step found the first invitation.
    assert_eq!(stack.certn.applications().len(), 1);
    sigterm(&host);
    assert!(exited(&mut host, LONG).await.0.success());
}

/// A small deterministic generator (the seed is printed, so a failure can be replayed).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// Whether Certn is done with a callback: answered with a status it does not retry, or out of
/// retries (the first attempt and 3 more).
fn callback_settled(c: &switchyard_sim::certn::CallbackDelivery) -> bool {
    match c.attempts.last() {
        None => false,
        Some(s) => c.attempts.len() >= 4 || !matches!(s, 0 | 408 | 500 | 502 | 503 | 504),
    }
}

const CANDIDATES: usize = 240;
const KILLS: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn killed_with_sigkill_under_load_nothing_accepted_is_lost_and_nothing_is_done_twice() {
    let dir = switchyard_tests::scratch("sigkill");
    let stack = Stack::prepare(options("sigkill", |o| {
        o.data_dir = dir.to_path_buf();
        // Certn ignores Idempotency-Key: only the connector can prevent a second invitation.
        o.certn.ignore_idempotency_keys = true;
        o.certn.step_delay = Some(Duration::from_millis(400));
        // Long enough retries that callbacks outlive a restart.
        o.certn.callback_retry_base = Duration::from_millis(1500);
    }))
    .await
    .expect("stack");
    // Answers come 150 ms after the application is created: kills land in between.
    stack.certn.set_latency(Duration::from_millis(150));
    stack
        .lever
        .set_webhook_retry_base(Duration::from_millis(600));
    let config = write_config(&stack, &dir, "lease_secs = 3");
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    eprintln!("sigkill test seed {seed}");
    let mut rng = Lcg(seed);

    let opps = stack.candidates(CANDIDATES, "Candidate", "cand");
    let stack = std::sync::Arc::new(stack);
    let mut host = serve(&config, stack.addr).await;

    // Senders: moves at a steady pace, from 4 tasks, whatever state the host is in.
    let mut senders = tokio::task::JoinSet::new();
    for chunk in opps.chunks(CANDIDATES / 4) {
        let (chunk, stack) = (chunk.to_vec(), stack.clone());
        senders.spawn(async move {
            for opp in chunk {
                let _ = stack.move_to(&opp, TRIGGER).await;
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
        });
    }
    let mut resumes = Vec::new();
    for k in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(700 + rng.next(1800))).await;
        host.kill().expect("kill -9");
        host.wait().expect("reap");
        let restarted = Instant::now();
        host = serve(&config, stack.addr).await;
        resumes.push(restarted.elapsed());
        eprintln!(
            "kill {} of {KILLS}: host back in {:.2?}",
            k + 1,
            restarted.elapsed()
        );
    }
    while senders.join_next().await.is_some() {}

    // Accepted = a 200 on some attempt of the delivery (Lever's view).
    let accepted: BTreeSet<String> = stack
        .lever
        .deliveries()
        .iter()
        .filter(|d| d.attempts.contains(&200))
        .filter_map(|d| {
            serde_json::from_str::<serde_json::Value>(&d.body)
                .ok()
                .and_then(|b| b["data"]["opportunityId"].as_str().map(str::to_string))
        })
        .collect();
    assert!(
        accepted.len() > CANDIDATES / 2,
        "most moves were accepted: {}",
        accepted.len()
    );

    // Every accepted event processed: nothing left queued or running, nothing dead. Certn keeps
    // calling back after the last move (a step every 400 ms, retries up to 9 s later), and each
    // callback swaps the status tag (remove, then add), so the flow is settled only once every
    // application is COMPLETE and no callback has an attempt left to make.
    let store_path = stack.config.storage.path.clone();
    let store = Store::open(&store_path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let settled = stack
            .certn
            .applications()
            .iter()
            .all(|a| a.status == "COMPLETE")
            && stack.certn.callbacks().iter().all(callback_settled);
        let pending = store.queue_depth().unwrap();
        let invited = accepted
            .iter()
            .filter(|o| {
                let opp = stack.lever.opportunity(o).expect("opportunity");
                !certn_tags(&opp).is_empty()
            })
            .count();
        if settled && pending == 0 && invited == accepted.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {pending} events pending, {invited}/{} accepted candidates with a status, \
             Certn settled: {settled}",
            accepted.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // No candidate invited twice (counted at Certn, which ignored the idempotency keys).
    assert_eq!(
        stack.certn.emails_invited_more_than_once(),
        vec![],
        "invited twice"
    );
    for (i, opp) in opps.iter().enumerate() {
        if accepted.contains(opp) {
            assert_eq!(
                stack
                    .certn
                    .invitations_for_email(&format!("cand{i}@example.com")),
                1,
                "an accepted candidate is invited once"
            );
        }
    }
    // Nothing dead-lettered (a vendor order the host never learned of shows up here: its
    // callbacks wait for an order that was never recorded).
    let dead = store
        .list_events(None, Some(EventState::Dead), 100)
        .unwrap();
    assert!(
        dead.is_empty(),
        "{} events dead-lettered, e.g. {:?}",
        dead.len(),
        dead.first()
    );
    // No tag or note written twice (counted at Lever).
    let mut tag_writes: BTreeMap<(String, String), usize> = BTreeMap::new();
    for r in stack.lever.request_log() {
        if r.method == "POST" && r.path.ends_with("/addTags") && (200..300).contains(&r.status) {
            let opp = r.path.split('/').nth(3).unwrap_or_default().to_string();
            for tag in r.body["tags"].as_array().into_iter().flatten() {
                *tag_writes
                    .entry((opp.clone(), tag.as_str().unwrap_or_default().to_string()))
                    .or_default() += 1;
            }
        }
    }
    let twice: Vec<_> = tag_writes.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "tags written twice: {twice:?}");
    for opp in &accepted {
        let o = stack.lever.opportunity(opp).unwrap();
        assert_eq!(certn_tags(&o).len(), 1, "one status tag: {:?}", o.tags);
        let mut seen = BTreeSet::new();
        for n in &o.notes {
            assert!(
                seen.insert(n.value.clone()),
                "note written twice on {opp}: {:?}",
                n.value
            );
        }
    }
    let resumed = store
        .list_events(None, None, 100_000)
        .unwrap()
        .iter()
        .filter_map(|e| store.event_detail(e.id).ok().flatten())
        .filter(|d| d.attempts_history.iter().any(|a| a.outcome == "abandoned"))
        .count();
    eprintln!("figure: {resumed} events taken back from a killed run and finished");
    resumes.sort();
    eprintln!(
        "figure: {KILLS} kill -9, {} accepted moves, restart → serving: median {:.2?}, max {:.2?}",
        accepted.len(),
        resumes[resumes.len() / 2],
        resumes.last().copied().unwrap_or_default()
    );
    drop(host);
}
