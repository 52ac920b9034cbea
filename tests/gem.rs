//! Gem (seed 002): Gem calls switchyard's Gem API to list packages and send checks through the
//! same Certn connector the Lever flow uses; statuses come back to the Gem simulator as signed
//! Standard Webhooks, which it verifies and dedupes. Loopback only, bounded waits.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::ats::gem::delivery::GEM_DELIVER;
use switchyard::config::Secret;
use switchyard::store::EventState;
use switchyard_sim::gem::ReceivedStatus;
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_testkit::{GemSetup, Stack, StackOptions, CERTN, GEM};

fn connectors() -> PathBuf {
    switchyard_tests::plugins_dir()
}

async fn stack(setup: GemSetup) -> anyhow::Result<Stack> {
    let data = switchyard_tests::scratch("gem");
    let mut opts = StackOptions::new(&connectors(), &data);
    opts.scratch = Some(data.0);
    opts.gem = Some(setup);
    Stack::start(opts).await
}

fn check(application: &str, email: Option<&str>, package: Option<&str>) -> Value {
    let mut body = json!({
        "application_id": application,
        "candidate": {"name": "Mary Jackson", "emails": email.map(|e| vec![e]).unwrap_or_default(), "phones": ["+1 555 0101"]},
        "stage": "Onsite",
    });
    if let Some(p) = package {
        body["package"] = json!(p);
    }
    body
}

/// Waits (bounded) until the Gem simulator has received `state` for screening `id`.
async fn wait_received(
    stack: &Stack,
    id: &str,
    state: &str,
    within: Duration,
) -> anyhow::Result<ReceivedStatus> {
    let deadline = Instant::now() + within;
    loop {
        let sim = &stack.gem()?.sim;
        if let Some(r) = sim
            .received()
            .into_iter()
            .find(|r| r.screening_id.as_deref() == Some(id) && r.state == state)
        {
            return Ok(r);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "timed out waiting for {state} of {id}; received {:#?}, rejected {:?}",
            sim.received(),
            sim.rejected()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_until(within: Duration, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while !done() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_chosen_packages_reach_complete_with_signed_status_webhooks(
) -> anyhow::Result<()> {
    let stack = stack(GemSetup::default()).await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();

    let (code, packages) = gem.sim.list_packages(&host, GEM, &key.key).await?;
    assert_eq!(code, 200, "{packages}");
    let names: Vec<(&str, bool)> = packages["packages"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or(""),
                p["default"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(
        names,
        [("Basic", true), ("Standard", false), ("Premium", false)]
    );

    let (code, default) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-1", Some("mary@example.com"), None),
            None,
        )
        .await?;
    assert_eq!(code, 202, "{default}");
    assert_eq!(default["status"], "queued");
    assert_eq!(default["package"], "Basic");
    let (code, chosen) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-2", Some("dorothy@example.com"), Some("premium")),
            None,
        )
        .await?;
    assert_eq!(code, 202, "{chosen}");
    assert_eq!(
        chosen["package"], "Premium",
        "the package name is matched case-insensitively"
    );

    for (sent, application, package) in
        [(&default, "app-1", "Basic"), (&chosen, "app-2", "Premium")]
    {
        let id = sent["id"].as_str().expect("an id");
        let done = wait_received(&stack, id, "complete", Duration::from_secs(30)).await?;
        assert_eq!(done.label, "CERTN - Complete");
        assert_eq!(done.application_id, application);
        let url = done.results_url.clone().expect("a results URL");
        assert!(url.starts_with(&gem.certn.api_base()), "{url}");
        assert_eq!(done.body["type"], "screening.status");
        assert!(done.body["occurred_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));

        let (code, status) = gem.sim.screening(&host, GEM, &key.key, id).await?;
        assert_eq!(code, 200, "{status}");
        assert_eq!(status["status"], "complete");
        assert_eq!(status["label"], "CERTN - Complete");
        assert_eq!(status["results_url"], json!(url));
        let order_ref = status["order_ref"].as_str().expect("an order");
        let application = gem
            .certn
            .application(order_ref)
            .expect("Certn has the application");
        assert_eq!(application.package, package);
        assert_eq!(
            application.applicant.email,
            if package == "Basic" {
                "mary@example.com"
            } else {
                "dorothy@example.com"
            }
        );
    }
    // One invitation per send (the Lever team's Certn saw nothing), nothing refused by Gem.
    assert_eq!(gem.certn.applications().len(), 2);
    assert!(stack.certn.applications().is_empty());
    assert!(gem.sim.rejected().is_empty(), "{:?}", gem.sim.rejected());
    let ids: std::collections::HashSet<_> = gem
        .sim
        .received()
        .into_iter()
        .map(|r| (r.screening_id, r.state))
        .collect();
    assert_eq!(
        ids.len(),
        gem.sim.received().len(),
        "one webhook per distinct status"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_revoked_and_missing_keys_and_bad_requests_get_clear_errors() -> anyhow::Result<()> {
    let stack = stack(GemSetup::default()).await?;
    let gem = stack.gem()?;
    let host = stack.host_url();
    let first = stack.gem_issue_key()?;
    let second = stack.gem_issue_key()?;

    assert_eq!(gem.sim.list_packages(&host, GEM, &first.key).await?.0, 200);
    assert_eq!(
        gem.sim.list_packages(&host, GEM, &second.key).await?.0,
        200,
        "several keys are active at once"
    );
    let (code, body) = gem
        .sim
        .list_packages(&host, GEM, "sy_0123456789ab_wrong")
        .await?;
    assert_eq!(code, 401);
    assert_eq!(body["error"], "invalid or revoked API key");
    assert_eq!(body["code"], "unauthorized");
    assert_eq!(gem.sim.list_packages(&host, GEM, "").await?.0, 401);
    let mut tampered = first.key.clone();
    tampered.push('x');
    assert_eq!(gem.sim.list_packages(&host, GEM, &tampered).await?.0, 401);

    switchyard::ats::gem::keys::revoke(&stack.host().app.store, GEM, &first.key_id)?;
    let (code, _) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &first.key,
            &check("app-r", Some("r@example.com"), None),
            None,
        )
        .await?;
    assert_eq!(code, 401, "a revoked key stops working at once");
    assert_eq!(gem.sim.list_packages(&host, GEM, &second.key).await?.0, 200);

    // The key is the Gem integration's: not valid elsewhere; a Lever integration has no Gem API.
    assert_eq!(
        gem.sim.list_packages(&host, "nope", &second.key).await?.0,
        404
    );
    assert_eq!(
        gem.sim.list_packages(&host, CERTN, &second.key).await?.0,
        404
    );

    let (code, body) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &second.key,
            &check("app-x", Some("x@example.com"), Some("Gold")),
            None,
        )
        .await?;
    assert_eq!(code, 422);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown package") && e.contains("Premium")),
        "{body}"
    );
    let (code, body) = gem
        .sim
        .send_check(&host, GEM, &second.key, &check("app-x", None, None), None)
        .await?;
    assert_eq!(code, 422);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("no email")),
        "{body}"
    );
    let (code, _) = gem
        .sim
        .send_check(&host, GEM, &second.key, &json!({"candidate": {}}), None)
        .await?;
    assert_eq!(code, 400);
    assert!(
        gem.certn.applications().is_empty() && gem.certn.invite_requests() == 0,
        "rejected sends do nothing"
    );
    let sends = stack.host().app.store.events(GEM, 100)?;
    assert!(sends.is_empty(), "rejected sends store nothing: {sends:?}");

    // Idempotency-Key: a repeat returns the first screening; another body with it → 409.
    let body = check("app-i", Some("i@example.com"), None);
    let (c1, a) = gem
        .sim
        .send_check(&host, GEM, &second.key, &body, Some("k-1"))
        .await?;
    let (c2, b) = gem
        .sim
        .send_check(&host, GEM, &second.key, &body, Some("k-1"))
        .await?;
    assert_eq!((c1, c2), (202, 202));
    assert_eq!(a["id"], b["id"]);
    // Still the same screening after the integration's default package changed meanwhile: the
    // repeat is compared with what Gem sent, not with what switchyard filled in.
    let app = &stack.host().app;
    let mut changed = app
        .integration(GEM)
        .expect("the Gem integration")
        .config
        .clone();
    for p in &mut changed.packages {
        p.default = p.name == "Premium";
    }
    app.put_integration(changed)?;
    let (c3, c) = gem
        .sim
        .send_check(&host, GEM, &second.key, &body, Some("k-1"))
        .await?;
    assert_eq!(
        (c3, &c["id"], &c["package"]),
        (202, &a["id"], &a["package"])
    );
    let other = check("app-j", Some("j@example.com"), None);
    assert_eq!(
        gem.sim
            .send_check(&host, GEM, &second.key, &other, Some("k-1"))
            .await?
            .0,
        409
    );
    wait_received(
        &stack,
        a["id"].as_str().unwrap_or(""),
        "complete",
        Duration::from_secs(30),
    )
    .await?;
    assert_eq!(
        gem.certn.applications().len(),
        1,
        "one invitation for the repeated send"
    );
    let (code, _) = gem
        .sim
        .screening(&host, GEM, &second.key, "scr_unknown")
        .await?;
    assert_eq!(code, 404);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_retried_while_gem_is_down_and_each_arrives_once() -> anyhow::Result<()> {
    let stack = stack(GemSetup::default()).await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();
    gem.sim.set_down(true);
    let (code, sent) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-d", Some("d@example.com"), None),
            None,
        )
        .await?;
    assert_eq!(code, 202, "{sent}");
    let id = sent["id"].as_str().expect("an id").to_string();

    // The screening completes on the host while every webhook to Gem fails.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = gem.sim.screening(&host, GEM, &key.key, &id).await?;
        if status["status"] == "complete" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "never completed: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until(Duration::from_secs(30), "several failed attempts", || {
        gem.sim.attempts() >= 8
    })
    .await?;
    assert!(gem.sim.received().is_empty());
    gem.sim.set_down(false);

    wait_received(&stack, &id, "complete", Duration::from_secs(30)).await?;
    let store = &stack.host().app.store;
    let deliveries = || -> anyhow::Result<Vec<_>> {
        Ok(store
            .events(GEM, 200)?
            .into_iter()
            .filter(|e| e.kind == GEM_DELIVER)
            .collect())
    };
    wait_until(Duration::from_secs(30), "every delivery is done", || {
        deliveries().is_ok_and(|d| d.iter().all(|e| e.state == EventState::Done))
    })
    .await?;
    let deliveries = deliveries()?;
    let received = gem.sim.received();
    // None lost: every queued webhook was delivered; none duplicated: one per id and per status.
    assert_eq!(received.len(), deliveries.len(), "{received:#?}");
    let states: std::collections::HashSet<_> = received.iter().map(|r| r.state.clone()).collect();
    assert_eq!(states.len(), received.len());
    assert!(
        states.contains("pending") && states.contains("complete"),
        "{states:?}"
    );
    assert!(
        deliveries.iter().any(|d| d.attempts > 1),
        "deliveries were retried"
    );
    assert!(gem.sim.attempts() > received.len());
    assert!(gem.sim.rejected().is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_alongside_the_old_one_until_the_overlap_ends() -> anyhow::Result<()>
{
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;

    // Inside the overlap: Gem still verifying with the old secret accepts, and so does Gem
    // switched to the new one.
    let stack = stack(GemSetup {
        webhook_secret: "new-secret".into(),
        previous: Some(("old-secret".into(), now + 3600)),
    })
    .await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();
    gem.sim.set_secrets(vec!["old-secret".into()]);
    let (_, a) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-o", Some("o@example.com"), None),
            None,
        )
        .await?;
    wait_received(
        &stack,
        a["id"].as_str().unwrap_or(""),
        "complete",
        Duration::from_secs(30),
    )
    .await?;
    gem.sim.set_secrets(vec!["new-secret".into()]);
    let (_, b) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-n", Some("n@example.com"), None),
            None,
        )
        .await?;
    wait_received(
        &stack,
        b["id"].as_str().unwrap_or(""),
        "complete",
        Duration::from_secs(30),
    )
    .await?;
    assert!(gem.sim.rejected().is_empty(), "{:?}", gem.sim.rejected());
    drop(stack);

    // After the overlap: only the new secret signs. A Gem still on the old secret refuses (401),
    // the webhooks are retried, and they arrive once Gem is switched to the new secret.
    let stack = stack_with_expired_previous(now).await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    gem.sim.set_secrets(vec!["old-secret".into()]);
    let (_, c) = gem
        .sim
        .send_check(
            &host_of(&stack),
            GEM,
            &key.key,
            &check("app-e", Some("e@example.com"), None),
            None,
        )
        .await?;
    wait_until(
        Duration::from_secs(30),
        "Gem refused a webhook signed only with the new secret",
        || gem.sim.rejected().iter().any(|r| r.status == 401),
    )
    .await?;
    assert!(gem.sim.received().is_empty());
    gem.sim.set_secrets(vec!["new-secret".into()]);
    wait_received(
        &stack,
        c["id"].as_str().unwrap_or(""),
        "complete",
        Duration::from_secs(30),
    )
    .await?;
    Ok(())
}

async fn stack_with_expired_previous(now: i64) -> anyhow::Result<Stack> {
    stack(GemSetup {
        webhook_secret: "new-secret".into(),
        previous: Some(("old-secret".into(), now - 1)),
    })
    .await
}

fn host_of(stack: &Stack) -> String {
    stack.host_url()
}

/// Issue 4's "the same connector components serve Lever and Gem": the Justifacts component that
/// runs the Lever flow serves a Gem integration unchanged. The integration is created through the
/// admin API on the running host, as an operator would; Gem's package choice (or the default)
/// becomes the Justifacts package code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_justifacts_connector_serves_a_gem_integration_created_through_the_admin_api(
) -> anyhow::Result<()> {
    const TOKEN: &str = "gem-test-admin-token-0123456789";
    let setup = GemSetup::default();
    let data = switchyard_tests::scratch("gem");
    let mut opts = StackOptions::new(&connectors(), &data);
    opts.scratch = Some(data.0);
    opts.gem = Some(setup.clone());
    opts.justifacts = Some(JustifactsOptions {
        step_delay: Some(Duration::from_millis(150)),
        ..JustifactsOptions::default()
    });
    let mut stack = Stack::prepare(opts).await?;
    stack.config.server.admin_token = Some(Secret::new(TOKEN));
    let stack = stack.run().await?;
    let host = stack.host_url();
    let gem = stack.gem()?;
    let jf = &stack
        .justifacts
        .as_ref()
        .expect("a Justifacts simulator")
        .sim;
    let jf_url = reqwest::Url::parse(&jf.api_base())?;
    let jf_host = format!(
        "{}:{}",
        jf_url.host_str().unwrap_or_default(),
        jf_url.port().unwrap_or(80)
    );

    let integration = json!({
        "id": "gem-jf", "connector": "justifacts",
        "ats": {"kind": "gem", "webhook_url": gem.sim.webhook_url(),
                "webhook_secret": setup.webhook_secret},
        "allowed_hosts": [jf_host], "allow_loopback": true,
        "settings": {"api-base": jf.api_base(), "client-code": jf.client_code()},
        "secrets": {"api-key": jf.api_key(), "webhook-secret": jf.webhook_secret()},
        "packages": [{"name": "Standard BGC", "default": true, "params": {"package-code": "13558"}},
                     {"name": "Drug Screen", "params": {"package-code": "777"}}],
    });
    let created = reqwest::Client::new()
        .post(format!("{host}/admin/integrations"))
        .bearer_auth(TOKEN)
        .json(&integration)
        .send()
        .await?;
    assert_eq!(created.status(), 201);
    let view: Value = created.json().await?;
    assert_eq!(
        view["webhook_urls"]["gem_api"],
        json!(format!("{host}/gem/gem-jf"))
    );
    assert_eq!(view["ats"]["kind"], "gem");
    assert!(!view.to_string().contains(&setup.webhook_secret));

    // The key Gem will use, issued through the admin API too (shown once, then only its prefix).
    let admin = |method: reqwest::Method, path: &str| {
        reqwest::Client::new()
            .request(method, format!("{host}/admin/integrations/{path}"))
            .bearer_auth(TOKEN)
    };
    let issued = admin(reqwest::Method::POST, "gem-jf/gem-keys")
        .send()
        .await?;
    assert_eq!(issued.status(), 201);
    let issued: Value = issued.json().await?;
    let key = issued["key"].as_str().expect("the key, once").to_string();
    assert_eq!(issued["gem_api"], json!(format!("{host}/gem/gem-jf")));
    let listed: Value = admin(reqwest::Method::GET, "gem-jf/gem-keys")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["keys"][0]["key_id"], issued["key_id"]);
    assert!(!listed.to_string().contains(&key), "{listed}");
    let not_gem = admin(reqwest::Method::POST, &format!("{CERTN}/gem-keys"))
        .send()
        .await?;
    assert_eq!(not_gem.status(), 409, "a Lever integration has no Gem keys");
    let (code, packages) = gem.sim.list_packages(&host, "gem-jf", &key).await?;
    assert_eq!(code, 200, "{packages}");
    assert_eq!(packages["packages"][0]["name"], "Standard BGC");
    assert_eq!(packages["packages"][0]["default"], true);

    let mut sent = Vec::new();
    for (application, package, code) in [
        ("app-jf-1", None, "13558"),
        ("app-jf-2", Some("Drug Screen"), "777"),
    ] {
        let (status, body) = gem
            .sim
            .send_check(
                &host,
                "gem-jf",
                &key,
                &check(application, Some("kj@example.com"), package),
                None,
            )
            .await?;
        assert_eq!(status, 202, "{body}");
        sent.push((body["id"].as_str().expect("an id").to_string(), code));
    }
    for (id, code) in &sent {
        let done = wait_received(&stack, id, "complete", Duration::from_secs(30)).await?;
        assert_eq!(done.label, "(Justifacts)Complete");
        // Justifacts keeps its result URL private (seed 004: a secret note in Lever), so it is
        // not a results URL anyone on the application could open; the verdict is.
        assert_eq!(done.results_url, None);
        assert_eq!(done.body["verdict"], "Clear");
        let (_, status) = gem.sim.screening(&host, "gem-jf", &key, id).await?;
        let order = jf
            .order(status["order_ref"].as_str().expect("an order"))
            .expect("Justifacts has the order");
        assert_eq!(&order.package_code, code);
    }
    assert_eq!(jf.orders(), 2, "one order per send");
    // Revoked through the admin API: refused at once.
    let key_id = issued["key_id"].as_str().expect("a key id");
    let revoked = admin(
        reqwest::Method::DELETE,
        &format!("gem-jf/gem-keys/{key_id}"),
    )
    .send()
    .await?;
    assert_eq!(revoked.status(), 200);
    let (code, _) = gem.sim.list_packages(&host, "gem-jf", &key).await?;
    assert_eq!(code, 401);
    // Deleting the integration revokes its keys: re-creating the id does not revive them.
    let second: Value = admin(reqwest::Method::POST, "gem-jf/gem-keys")
        .send()
        .await?
        .json()
        .await?;
    let second = second["key"].as_str().expect("a key").to_string();
    assert_eq!(
        gem.sim.list_packages(&host, "gem-jf", &second).await?.0,
        200
    );
    let deleted = admin(reqwest::Method::DELETE, "gem-jf").send().await?;
    assert_eq!(deleted.status(), 200);
    let recreated = reqwest::Client::new()
        .post(format!("{host}/admin/integrations"))
        .bearer_auth(TOKEN)
        .json(&integration)
        .send()
        .await?;
    assert_eq!(recreated.status(), 201);
    assert_eq!(
        gem.sim.list_packages(&host, "gem-jf", &second).await?.0,
        401
    );
    assert!(gem.sim.rejected().is_empty(), "{:?}", gem.sim.rejected());
    Ok(())
}

/// Gem answering 503 with `Retry-After` is not retried sooner than it asked, although the
/// configured backoff alone would retry within a fraction of a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_from_gem_is_honoured() -> anyhow::Result<()> {
    let stack = stack(GemSetup::default()).await?;
    assert!(
        stack.config.worker.retry_base_ms <= 500,
        "the test needs a first backoff well under the Retry-After"
    );
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    gem.sim.set_retry_after(Some(2));
    gem.sim.set_down(true);
    let (code, sent) = gem
        .sim
        .send_check(
            &stack.host_url(),
            GEM,
            &key.key,
            &check("app-r", Some("r@example.com"), None),
            None,
        )
        .await?;
    assert_eq!(code, 202, "{sent}");
    let retried = |log: &[(String, Instant)]| {
        log.first()
            .and_then(|(id, _)| log.iter().filter(|(other, _)| other == id).nth(1))
            .is_some()
    };
    wait_until(Duration::from_secs(30), "a webhook was retried", || {
        retried(&gem.sim.attempt_log())
    })
    .await?;
    let log = gem.sim.attempt_log();
    let (first_id, first_at) = log[0].clone();
    let (_, second_at) = log
        .iter()
        .filter(|(id, _)| *id == first_id)
        .nth(1)
        .expect("a second attempt")
        .clone();
    assert!(
        second_at - first_at >= Duration::from_millis(1_950),
        "retried after {:?}",
        second_at - first_at
    );
    gem.sim.set_down(false);
    let id = sent["id"].as_str().expect("an id");
    wait_received(&stack, id, "complete", Duration::from_secs(60)).await?;
    Ok(())
}

/// A send that cannot be started (Certn down past the retry budget) is dead-lettered and reported
/// to Gem as an `error` status, so the recruiter is not left looking at "queued".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_that_cannot_start_reaches_gem_as_an_error() -> anyhow::Result<()> {
    let data = switchyard_tests::scratch("gem");
    let mut opts = StackOptions::new(&connectors(), &data);
    opts.scratch = Some(data.0);
    opts.gem = Some(GemSetup::default());
    opts.worker.max_attempts = 2;
    let stack = Stack::start(opts).await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();
    gem.certn.set_down(true);
    let (code, sent) = gem
        .sim
        .send_check(
            &host,
            GEM,
            &key.key,
            &check("app-x", Some("x@example.com"), None),
            None,
        )
        .await?;
    assert_eq!(code, 202, "{sent}");
    let id = sent["id"].as_str().expect("an id");
    let failed = wait_received(&stack, id, "error", Duration::from_secs(30)).await?;
    assert_eq!(failed.label, "ERROR (could not start)");
    let (_, status) = gem.sim.screening(&host, GEM, &key.key, id).await?;
    assert_eq!(status["status"], "error");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains("event")),
        "{status}"
    );
    assert!(gem.certn.applications().is_empty());
    let store = &stack.host().app.store;
    let dead: Vec<_> = store
        .events(GEM, 50)?
        .into_iter()
        .filter(|e| e.state == EventState::Dead)
        .collect();
    assert_eq!(dead.len(), 1, "the send itself is dead-lettered: {dead:?}");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].last_error.as_deref().unwrap_or("").contains("503"),
        "the reason is kept for the operator: {:?}",
        dead[0].last_error
    );
    Ok(())
}

/// Disabling a Gem integration stops new sends, but what already happened still reaches Gem:
/// queued status webhooks are delivered, and a send not started yet ends as an `error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_gem_integration_still_delivers_what_happened_before() -> anyhow::Result<()> {
    let stack = stack(GemSetup::default()).await?;
    let gem = stack.gem()?;
    let key = stack.gem_issue_key()?;
    let host = stack.host_url();
    gem.sim.set_down(true);
    let send = |application: &'static str| {
        let (gem, host, key) = (&gem.sim, host.clone(), key.key.clone());
        async move {
            let body = check(application, Some("a@example.com"), None);
            gem.send_check(&host, GEM, &key, &body, None).await
        }
    };
    let (code, done) = send("app-done").await?;
    assert_eq!(code, 202, "{done}");
    let done = done["id"].as_str().expect("an id").to_string();
    wait_until(Duration::from_secs(30), "the first check completes", || {
        let app = &stack.host().app;
        app.store
            .events(GEM, 100)
            .map(|events| events.iter().filter(|e| e.kind == GEM_DELIVER).count() >= 4)
            .unwrap_or(false)
    })
    .await?;
    // A second send that cannot start yet (Certn down), then the integration is disabled.
    gem.certn.set_down(true);
    let (code, pending) = send("app-pending").await?;
    assert_eq!(code, 202, "{pending}");
    let pending = pending["id"].as_str().expect("an id").to_string();
    wait_until(
        Duration::from_secs(30),
        "the second send failed once",
        || {
            stack.host().app.store.events(GEM, 100).is_ok_and(|events| {
                events
                    .iter()
                    .any(|e| e.kind == "gem.send" && e.attempts >= 1 && e.last_error.is_some())
            })
        },
    )
    .await?;
    let app = &stack.host().app;
    let mut disabled = app
        .integration(GEM)
        .expect("the integration")
        .config
        .clone();
    disabled.enabled = false;
    app.put_integration(disabled)?;
    gem.sim.set_down(false);

    wait_received(&stack, &done, "complete", Duration::from_secs(30)).await?;
    let failed = wait_received(&stack, &pending, "error", Duration::from_secs(30)).await?;
    assert_eq!(failed.label, "ERROR (could not start)");
    assert_eq!(send("app-new").await?.0, 503, "no new sends while disabled");
    Ok(())
}
