//! Several hosts on one PostgreSQL database, coordinated through it: one OAuth refresh per
//! integration across hosts (Lever rotates refresh tokens: a second refresh with the same token
//! would lock the customer out); and PostgreSQL lost while a host runs (cut through a loopback
//! proxy, never by stopping the shared test cluster), and a lock lost with its connection. The
//! locks themselves are tested in `host/src/store/locks.rs`, the leader row in
//! `host/src/store/leader.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use switchyard::ats::lever::oauth::LeverOAuth;
use switchyard::config::LeverOAuthConfig;
use switchyard::metrics::Metrics;
use switchyard::store::oauth::StateCheck;
use switchyard::store::{LockName, Store, StoreError};
use switchyard_sim::lever::LeverSim;
use switchyard_testkit::lever_oauth::simulator_app;
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::{all_done, certn_complete, options};

const INTEGRATION: &str = "certn";

/// A host's Lever OAuth app on its own connection pool to the shared database.
fn host(url: &str, app: &LeverOAuthConfig) -> Arc<LeverOAuth> {
    let store = Store::open_postgres(url, None).expect("store");
    Arc::new(
        LeverOAuth::new(
            Some(app),
            "http://127.0.0.1:9",
            store,
            reqwest::Client::new(),
            Arc::new(Metrics::default()),
        )
        .expect("OAuth app"),
    )
}

/// Connects `INTEGRATION` through `oauth` the way the callback does: consent at the simulator
/// (which approves at once), then the code exchanged and the grant stored.
async fn connect(oauth: &LeverOAuth, store: &Store) {
    let (authorize, _) = oauth.authorize_url(INTEGRATION).expect("connect link");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let consent = browser.get(&authorize).send().await.expect("authorize");
    let back = consent
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| reqwest::Url::parse(v).ok())
        .expect("redirected back with a code");
    let param = |name: &str| {
        back.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {name} in {back}"))
    };
    let StateCheck::Valid { pkce_verifier, .. } =
        store.oauth_take_state(&param("state")).expect("state")
    else {
        panic!("the state just issued is valid");
    };
    let tokens = oauth
        .exchange(&param("code"), &pkce_verifier)
        .await
        .expect("code exchanged");
    store.oauth_connect(INTEGRATION, &tokens).expect("stored");
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_refreshing_one_grant_at_once_send_one_refresh_and_share_the_new_token() {
    let lever = LeverSim::start().await.expect("Lever simulator");
    let mut app = simulator_app(&lever, "http://127.0.0.1:9");
    // Every request to Lever's token endpoint takes 300 ms to arrive: calls that start together
    // on both hosts all read the grant before a refresh is stored, so only the cross-host lock
    // keeps the second host from spending the same refresh token.
    let mut token_url = reqwest::Url::parse(&app.token_url).expect("token URL");
    let upstream = format!(
        "{}:{}",
        token_url.host_str().expect("host"),
        token_url.port_or_known_default().expect("port")
    );
    let slow = Proxy::start_slow(upstream, Duration::from_millis(300)).await;
    token_url.set_port(Some(slow.addr.port())).expect("port");
    app.token_url = token_url.to_string();
    let url = switchyard_testkit::pg::database();
    let (a, b) = (host(&url, &app), host(&url, &app));
    let store = Store::open_postgres(&url, None).expect("store");
    connect(&a, &store).await;
    let seen = store
        .oauth_tokens(INTEGRATION)
        .expect("read")
        .expect("connected")
        .access_token;

    // Both hosts have read the grant once (their connections are open), so neither is slowed
    // by a first connection when the calls race: without the cross-host lock, both refresh.
    for oauth in [&a, &b] {
        let current = oauth.tokens_for(INTEGRATION).access_token().await;
        assert_eq!(current.expect("a token").expose(), seen.expose());
    }
    // Lever answered 401 to the same token on both hosts, to three calls each, at once.
    let calls = [&a, &b, &a, &b, &a, &b].map(|oauth| {
        let source = oauth.tokens_for(INTEGRATION);
        let seen = seen.clone();
        tokio::spawn(async move { source.after_unauthorized(&seen).await })
    });
    let mut fresh = Vec::new();
    for call in calls {
        fresh.push(call.await.expect("joined").expect("a usable token"));
    }

    let requests = lever.token_requests();
    assert_eq!(
        (requests.refresh_token, requests.refused),
        (1, 0),
        "one refresh across hosts, no rotated-away token presented: {requests:?}"
    );
    let stored = store
        .oauth_tokens(INTEGRATION)
        .expect("read")
        .expect("still connected")
        .access_token;
    assert_ne!(stored, seen, "refreshed");
    assert!(
        fresh.iter().all(|t| *t == stored),
        "every call on every host got the new token"
    );
}

/// A loopback TCP proxy to PostgreSQL that a test can cut (live connections dropped, new ones
/// refused), stall (live connections dropped, new ones accepted and never answered, as when
/// packets are dropped) and restore.
///
/// It runs on a runtime of its own, like the network element it stands for: the host under
/// test makes its store calls synchronously, and a proxy task queued behind such a call on the
/// test's runtime would never forward the bytes the call waits for.
struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
    /// Taken only by `drop`.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        Proxy::start_slow(upstream, Duration::ZERO).await
    }

    /// A proxy that holds every chunk the client sends for `delay` before passing it on.
    async fn start_slow(upstream: String, delay: Duration) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("test-pg-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("address");
        let listener = {
            let _inside = runtime.enter();
            TcpListener::from_std(listener).expect("listener")
        };
        let open = Arc::new(AtomicBool::new(true));
        let stalled = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = runtime.spawn({
            let (open, stalled, live) = (open.clone(), stalled.clone(), live.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees its connection closed
                    }
                    let upstream = upstream.clone();
                    let stall = stalled.load(Ordering::SeqCst);
                    let task = tokio::spawn(async move {
                        if stall {
                            // Held open, never answered, until cut or restored.
                            std::future::pending::<()>().await;
                        }
                        let Ok(mut outbound) = TcpStream::connect(&upstream).await else {
                            return;
                        };
                        if delay.is_zero() {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                        let (mut from_client, mut to_client) = inbound.into_split();
                        let (mut from_server, mut to_server) = outbound.into_split();
                        let answers = tokio::spawn(async move {
                            let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
                        });
                        let mut chunk = vec![0; 16 * 1024];
                        while let Ok(n @ 1..) = from_client.read(&mut chunk).await {
                            tokio::time::sleep(delay).await;
                            if to_server.write_all(&chunk[..n]).await.is_err() {
                                break;
                            }
                        }
                        answers.abort();
                    });
                    live.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(task.abort_handle());
                }
            }
        });
        Proxy {
            addr,
            open,
            stalled,
            live,
            accept,
            runtime: Some(runtime),
        }
    }

    /// A proxy to the database of `url`, and the URL that reaches it through the proxy.
    async fn to(url: &str) -> (Proxy, reqwest::Url) {
        let database = reqwest::Url::parse(url).expect("test URL");
        let upstream = format!(
            "{}:{}",
            database.host_str().expect("host"),
            database.port().unwrap_or(5432)
        );
        let proxy = Proxy::start(upstream).await;
        let mut through = database;
        through.set_port(Some(proxy.addr.port())).expect("port");
        through.set_host(Some("127.0.0.1")).expect("host");
        (proxy, through)
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for task in self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    fn stall(&self) {
        self.cut();
        self.stalled.store(true, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.cut();
        self.stalled.store(false, Ordering::SeqCst);
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
        // Dropped in async code, where a runtime may not block to shut down.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_whose_lock_connection_died_learns_it_lost_the_lock_before_writing_again() {
    let url = switchyard_testkit::pg::database();
    let (proxy, through) = Proxy::to(&url).await;
    let a = Store::open_postgres(through.as_str(), None).expect("host a's store");
    let b = Store::open_postgres(&url, None).expect("host b's store");
    let opportunity = LockName::Opportunity {
        integration: INTEGRATION,
        opportunity: "opp-1",
    };
    let held = a.lock(opportunity).await.expect("host a locks");
    held.still_held().await.expect("held while connected");

    // Host a's connections die; PostgreSQL ends its session, and host b takes the lock.
    proxy.cut();
    let _taken = tokio::time::timeout(Duration::from_secs(30), b.lock(opportunity))
        .await
        .expect("host b gets the lock of the dead connection")
        .expect("host b locks");
    assert!(
        matches!(held.still_held().await, Err(StoreError::LockLost)),
        "host a finds out before its next write"
    );
}

/// `/healthz`: its status, `Retry-After` and JSON body.
async fn health(stack: &Stack) -> (u16, Option<String>, serde_json::Value) {
    let resp = reqwest::get(format!("http://{}/healthz", stack.addr))
        .await
        .expect("healthz answers");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, resp.json().await.unwrap_or_default())
}

/// Polls `/healthz` (bounded) until it answers `status`; returns its body.
async fn health_becomes(stack: &Stack, status: u16) -> (Option<String>, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (now, retry, body) = health(stack).await;
        if now == status {
            return (retry, body);
        }
        assert!(Instant::now() < deadline, "/healthz stayed {now}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A stack whose host reaches a new PostgreSQL database through a [`Proxy`]; Lever retries a
/// refused delivery after 1, 3, 7, 15 and 31 s.
async fn stack_through_proxy(test: &str) -> (Proxy, Stack) {
    let (proxy, through) = Proxy::to(&switchyard_testkit::pg::database()).await;
    let mut stack = Stack::prepare(options(test, |_| {}))
        .await
        .expect("stack prepared");
    stack.config.storage.url = Some(through.to_string());
    let stack = stack.run().await.expect("host starts on PostgreSQL");
    stack.lever.set_webhook_retry_base(Duration::from_secs(1));
    (proxy, stack)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_lost_while_running_answers_503_and_everything_acknowledged_is_processed_after() {
    let (proxy, stack) = stack_through_proxy("pg-lost").await;
    let (_, body) = health_becomes(&stack, 200).await;
    assert_eq!(body["leader"], true, "the only host leads: {body}");
    let before = stack.candidate("Before Outage", Some("before@example.com"), &[], None);
    certn_complete(&stack, &before, Duration::from_secs(60)).await;

    proxy.cut();
    let (retry, body) = health_becomes(&stack, 503).await;
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("database unreachable")),
        "/healthz says why: {body}"
    );
    assert!(retry.is_some(), "/healthz asks to come back later");
    // A webhook now is refused with Retry-After, never acknowledged without a commit.
    let during = stack.candidate("During Outage", Some("during@example.com"), &[], None);
    let status = stack.move_to(&during, TRIGGER).await.expect("delivered");
    assert_eq!(
        status, 503,
        "Lever's delivery is refused while the database is gone"
    );
    let delivery = stack
        .lever
        .deliveries()
        .last()
        .cloned()
        .expect("a delivery");
    let resp = reqwest::Client::new()
        .post(&delivery.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(delivery.body.clone())
        .send()
        .await
        .expect("intake answers");
    assert_eq!(resp.status().as_u16(), 503);
    assert!(
        resp.headers().get(reqwest::header::RETRY_AFTER).is_some(),
        "503 with Retry-After"
    );

    proxy.restore();
    health_becomes(&stack, 200).await;
    // Lever's retry is acknowledged now, and processed once.
    let opp = stack
        .wait_for(&during, Duration::from_secs(60), |o| {
            o.tags.contains(&"CERTN - Complete".to_string()) && !o.links.is_empty()
        })
        .await
        .expect("the webhook refused during the outage is processed after it");
    assert_eq!(opp.links.len(), 1, "{:?}", opp.links);
    let events = all_done(&stack, CERTN, Duration::from_secs(30)).await;
    let webhooks: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "lever.stage_change")
        .collect();
    assert_eq!(
        webhooks.len(),
        2,
        "one event per acknowledged webhook: {webhooks:?}"
    );
    assert_eq!(stack.certn.invitations_for_email("during@example.com"), 1);
    assert_eq!(stack.certn.invitations_for_email("before@example.com"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_webhook_is_refused_within_seconds_while_the_database_drops_packets() {
    let (proxy, stack) = stack_through_proxy("pg-stall").await;
    health_becomes(&stack, 200).await;

    // The writer's connection dies, and every new connection hangs unanswered.
    proxy.stall();
    let during = stack.candidate("During Stall", Some("stall@example.com"), &[], None);
    let started = Instant::now();
    let status = stack.move_to(&during, TRIGGER).await.expect("delivered");
    let took = started.elapsed();
    assert_eq!(status, 503, "refused, never acknowledged without a commit");
    assert!(
        took < Duration::from_secs(6),
        "refused within the writer's reconnect bound, not after a connect timeout: {took:?}"
    );

    proxy.restore();
    stack
        .wait_for(&during, Duration::from_secs(60), |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await
        .expect("Lever's retry is acknowledged once the database answers, and processed");
}
