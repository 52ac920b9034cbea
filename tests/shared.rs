//! Two hosts on one PostgreSQL database agree within seconds on what operators change through
//! either: connector versions (uploaded once, compiled by each host, activated and rolled back
//! from any host) and integrations (created, paused, edited at once on both hosts), and a Gem key
//! issued on one host works on the other, and a Lever connect link made on one host completes
//! through the other's callback.
//!
//! Host B is the stack's own host (the Lever simulator sends its webhooks there); host A is a
//! second `switchyard` on the same database, another port and its own data dir (code cache,
//! run locks). Every wait is bounded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;
use switchyard::config::Secret;
use switchyard::RunningHost;
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_testkit::{Stack, StackOptions, CERTN, JUSTIFACTS, TRIGGER};
use switchyard_tests::support_admin::{self, plugin, variant, Admin, Body, TOKEN};

/// How long a change made on one host may take to reach the other (`storage.sync_ms` is 1 s).
const SYNC: Duration = Duration::from_secs(15);

/// A scratch directory removed when the test ends (declared first, so dropped last).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Host B (the stack's) and host A on one new PostgreSQL database.
struct Pair {
    stack: Stack,
    other: Option<RunningHost>,
    a: Admin,
    b: Admin,
    // Last: removed once both hosts are gone.
    _scratch: Scratch,
}

impl Pair {
    async fn start(test: &str) -> anyhow::Result<Pair> {
        Pair::start_with(test, &["certn"], |_| {}).await
    }

    /// Host A answers for the same public URL as B, as hosts behind one load balancer do.
    async fn start_with(
        test: &str,
        plugins: &[&str],
        tweak: impl FnOnce(&mut StackOptions),
    ) -> anyhow::Result<Pair> {
        let scratch = Scratch(std::env::temp_dir().join(format!(
            "sy-shared-{test}-{}-{}",
            std::process::id(),
            switchyard::clock::now_ms()
        )));
        let dir = support_admin::connectors_dir(&scratch.0, plugins);
        let mut opts = StackOptions::new(&dir, &scratch.0.join("b"));
        tweak(&mut opts);
        let mut stack = Stack::prepare(opts).await?;
        stack.config.server.admin_token = Some(Secret::new(TOKEN));
        stack.config.storage.url = Some(switchyard_testkit::pg::database());
        let mut config = stack.config.clone();
        let stack = stack.run().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr: SocketAddr = listener.local_addr()?;
        config.server.listen = addr.to_string();
        config.server.public_url = Some(format!("http://{}", stack.addr));
        config.storage.path = scratch.0.join("a").join("switchyard.db");
        let other = switchyard::start_on(config, listener).await?;
        Ok(Pair {
            b: Admin::new(&stack, Some(TOKEN)),
            a: Admin::at(format!("http://{addr}"), Some(TOKEN)),
            stack,
            other: Some(other),
            _scratch: scratch,
        })
    }

    /// Host A's state, in process.
    fn app_a(&self) -> &switchyard::app::App {
        &self.other.as_ref().expect("host A runs").app
    }

    fn app_b(&self) -> &switchyard::app::App {
        &self.stack.host().app
    }

    async fn stop(mut self) {
        if let Some(host) = self.other.take() {
            host.shutdown().await;
        }
        if let Some(host) = self.stack.host.take() {
            host.shutdown().await;
        }
    }
}

/// Waits (bounded) until `admin`'s host reports version `hash` of `id` as active; its tag.
async fn until_active(admin: &Admin, id: &str, hash: &str, which: &str) -> String {
    let deadline = Instant::now() + SYNC;
    loop {
        let tag = admin.active(id).await;
        if tag.ends_with(&hash[..12]) {
            return tag;
        }
        assert!(
            Instant::now() < deadline,
            "host {which} still serves {tag}, not {hash}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits (bounded) until `check` holds.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + SYNC;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_uploaded_through_one_host_serves_on_the_other_and_rolls_back_from_it(
) -> anyhow::Result<()> {
    let pair = Pair::start("versions").await?;
    let original = pair.b.active("certn").await;
    let original_hash = pair
        .app_b()
        .registry
        .get("certn")
        .expect("certn serves")
        .hash
        .clone();

    // Uploaded and activated through A: stored once, and B compiles and serves it.
    let v2 = variant(&plugin("certn"), "shared-v2");
    let (status, body) = pair
        .a
        .post(
            "/admin/connectors/certn/versions?activate=true",
            Some(Body::Bytes(v2.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let hash = body["version"]["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(pair.app_a().store.components()?.len(), 1, "stored once");
    let tag = until_active(&pair.b, "certn", &hash, "B").await;
    let (_, listing) = pair.b.get("/admin/connectors/certn").await;
    let on_b = listing["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["hash"] == hash.as_str())
        .cloned()
        .unwrap_or_default();
    assert!(
        on_b["source"]
            .as_str()
            .unwrap_or("")
            .starts_with("database:"),
        "B loaded it from the database: {listing}"
    );
    assert_eq!(on_b["status"], "active", "{listing}");

    // Rolled back through B: A serves the original again.
    let (status, body) = pair.b.post("/admin/connectors/certn/rollback", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        until_active(&pair.a, "certn", &original_hash, "A").await,
        original
    );

    // Activated again through A, by hash prefix; then A stops, and the next event runs on B.
    let (status, body) = pair
        .a
        .post(
            &format!("/admin/connectors/certn/versions/{}/activate", &hash[..12]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_active(&pair.b, "certn", &hash, "B").await;
    let mut pair = pair;
    if let Some(a) = pair.other.take() {
        a.shutdown().await;
    }
    let ada = pair
        .stack
        .candidate("Ada", Some("ada@example.com"), &[], None);
    assert_eq!(pair.stack.move_to(&ada, TRIGGER).await?, 200);
    pair.stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t.starts_with("CERTN - "))
        })
        .await?;
    // The outcome (with the version) is recorded after the write-back, with the worker's
    // next claim: wait for it rather than read at once.
    let store = pair.app_b().store.clone();
    let done = |events: &[switchyard::store::Event]| {
        events
            .iter()
            .any(|e| e.connector_version.as_deref() == Some(tag.as_str()))
    };
    switchyard_tests::eventually("the event's outcome on B", Duration::from_secs(10), || {
        store.events(CERTN, 10).ok().filter(|e| done(e)).map(drop)
    })
    .await;
    let events = store.events(CERTN, 10)?;
    assert!(
        done(&events),
        "an event processed on B records {tag}: {:?}",
        events
            .iter()
            .map(|e| &e.connector_version)
            .collect::<Vec<_>>()
    );
    pair.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_version_goes_on_every_host_and_a_host_started_later_serves_the_active_one(
) -> anyhow::Result<()> {
    let pair = Pair::start("later").await?;
    let mut hashes = Vec::new();
    for label in ["r1", "r2"] {
        let (status, body) = pair
            .a
            .post(
                "/admin/connectors/certn/versions",
                Some(Body::Bytes(variant(&plugin("certn"), label))),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        hashes.push(
            body["version"]["hash"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let (status, body) = pair
        .a
        .post(
            &format!("/admin/connectors/certn/versions/{}/activate", hashes[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    until_active(&pair.b, "certn", &hashes[0], "B").await;

    // Removed through B: gone from the database and from A.
    let (status, body) = pair
        .b
        .call(
            Method::DELETE,
            &format!("/admin/connectors/certn/versions/{}", hashes[1]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let registry = pair.app_a().registry.clone();
    until("A forgets the removed version", || {
        !registry.hashes().contains(&hashes[1])
    })
    .await;
    assert!(pair.app_a().store.component_bytes(&hashes[1])?.is_none());
    // The active version cannot go, on either host.
    let (status, _) = pair
        .a
        .call(
            Method::DELETE,
            &format!("/admin/connectors/certn/versions/{}", hashes[0]),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // A third host started now (an empty data dir, no code cache) serves the active version.
    let mut config = pair.app_b().config.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    config.server.listen = listener.local_addr()?.to_string();
    config.storage.path = pair._scratch.0.join("c").join("switchyard.db");
    let c = switchyard::start_on(config, listener).await?;
    let serving = c.app.registry.get("certn").map(|v| v.hash.clone());
    assert_eq!(serving.as_deref(), Some(hashes[0].as_str()));
    c.shutdown().await;
    pair.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn integrations_and_gem_keys_changed_on_one_host_reach_the_other() -> anyhow::Result<()> {
    let pair = Pair::start("integrations").await?;
    let certn = &pair.stack.certn;
    let create = json!({
        "id": "gem-shared", "connector": "certn",
        "ats": {"kind": "gem", "webhook_url": "http://127.0.0.1:9/gem-hooks",
                "webhook_secret": "gem-shared-webhook-secret"},
        "settings": {"api-base": certn.api_base()},
        "secrets": {"api-key": certn.api_key(), "webhook-secret": certn.webhook_secret()},
        "packages": [{"name": "Standard", "default": true,
                      "params": {"checks": "criminal_record_check"}}]
    });
    let (status, body) = pair
        .a
        .post("/admin/integrations", Some(Body::Json(create.clone())))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let b = pair.app_b();
    until("B serves the integration created on A", || {
        b.integration("gem-shared").is_some()
    })
    .await;
    // The same id again through B: it exists there too.
    let (status, body) = pair
        .b
        .post("/admin/integrations", Some(Body::Json(create)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // A key issued through A authenticates on B.
    let (status, issued) = pair
        .a
        .post("/admin/integrations/gem-shared/gem-keys", None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let key = issued["key"].as_str().unwrap_or_default().to_string();
    let packages = reqwest::Client::new()
        .get(format!("{}/gem/gem-shared/packages", pair.stack.host_url()))
        .header("x-api-key", &key)
        .send()
        .await?;
    assert_eq!(packages.status(), StatusCode::OK);
    let wrong = reqwest::Client::new()
        .get(format!("{}/gem/gem-shared/packages", pair.stack.host_url()))
        .header("x-api-key", format!("{key}x"))
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);

    // Paused on A (the config-file Certn integration too): paused on B.
    for id in ["gem-shared", CERTN] {
        let (status, body) = pair
            .a
            .post(&format!("/admin/integrations/{id}/disable"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        until(&format!("B pauses {id}"), || {
            b.integration(id).is_some_and(|i| !i.config.enabled)
        })
        .await;
    }
    let (_, shown) = pair.b.get("/admin/integrations/gem-shared").await;
    assert_eq!(shown["enabled"], false, "{shown}");

    // Deleted through B: gone on A, and its key with it.
    let (status, body) = pair
        .b
        .call(Method::DELETE, "/admin/integrations/gem-shared", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a = pair.app_a();
    until("A forgets the deleted integration", || {
        a.integration("gem-shared").is_none()
    })
    .await;
    pair.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_on_two_hosts_both_land() -> anyhow::Result<()> {
    let pair = Pair::start("patches").await?;
    // Each round: A changes the trigger stage while B changes the state quota, at once. Both
    // edits read the same row; the one that loses reads again, so neither change is dropped.
    for round in 0..5u64 {
        let stage = format!("Stage {round}");
        let quota = 100_000 + round;
        let path = format!("/admin/integrations/{CERTN}");
        let on_a = pair.a.call(
            Method::PATCH,
            &path,
            Some(Body::Json(json!({"ats": {"trigger_stage": stage}}))),
        );
        let on_b = pair.b.call(
            Method::PATCH,
            &path,
            Some(Body::Json(json!({"state_total_bytes": quota}))),
        );
        let ((sa, ba), (sb, bb)) = tokio::join!(on_a, on_b);
        assert_eq!(sa, StatusCode::OK, "{ba}");
        assert_eq!(sb, StatusCode::OK, "{bb}");
        for (name, admin) in [("A", &pair.a), ("B", &pair.b)] {
            let deadline = Instant::now() + SYNC;
            loop {
                let (_, body) = admin.get(&path).await;
                if body["ats"]["trigger_stage"] == stage.as_str()
                    && body["state_total_bytes"] == quota
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "round {round}: host {name} shows {body} without both edits"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    pair.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lever_connect_link_made_on_one_host_completes_on_the_other() -> anyhow::Result<()> {
    let pair = Pair::start_with("oauth", &["certn", "justifacts"], |o| {
        o.justifacts = Some(JustifactsOptions::default());
        o.justifacts_oauth = true;
    })
    .await?;
    // The link (its state and PKCE verifier) is made by A; Lever sends the browser back to the
    // public URL, which is B here: B checks the state A stored and stores the grant.
    let a = pair.app_a();
    assert_eq!(a.public_url, format!("http://{}", pair.stack.addr));
    let answer = switchyard_testkit::lever_oauth::browser_connect(a, JUSTIFACTS).await?;
    assert_eq!(answer["status"], "connected", "{answer}");
    assert!(pair.app_b().store.oauth_tokens(JUSTIFACTS)?.is_some());
    pair.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stored_version_a_host_cannot_load_is_reported_and_its_version_keeps_serving(
) -> anyhow::Result<()> {
    let pair = Pair::start("broken").await?;
    let serving = pair.b.active("certn").await;
    let original = pair
        .app_b()
        .registry
        .get("certn")
        .expect("certn serves")
        .hash
        .clone();
    // Bytes no host can load, named active (as a damaged or foreign write to the database would).
    let bad = "0badc0de".repeat(8);
    let store = &pair.app_a().store;
    store.put_component(&bad, "certn", b"not a component")?;
    store.put_deployment(&switchyard::store::admin::Deployment {
        connector: "certn".into(),
        active_hash: bad.clone(),
        previous_hash: Some(original),
    })?;
    for (name, admin) in [("A", &pair.a), ("B", &pair.b)] {
        let deadline = Instant::now() + SYNC;
        loop {
            let (_, body) = admin.get("/admin/connectors/certn").await;
            let reported = body["problems"].as_array().into_iter().flatten().any(|p| {
                p["hash"] == bad.as_str() && p["reason"].as_str().is_some_and(|r| !r.is_empty())
            });
            if reported {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "host {name} does not report {bad}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(
            admin.active("certn").await,
            serving,
            "host {name} keeps serving"
        );
    }
    pair.stop().await;
    Ok(())
}
