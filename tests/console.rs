//! The operator console (`/console`): sign-in, sessions, CSRF, roles, the rate limit and escaping
//! over HTTP, then the whole tour in a headless Chromium (screenshots into `docs/console/`).
//!
//! The browser test needs `chromium` and `chromedriver` (scripts/test.sh installs them).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use switchyard::store::EventState;
use switchyard_testkit::{CERTN, TRIGGER};
use switchyard_tests::support_admin::{plugin, variant, Admin, TOKEN};
use switchyard_tests::support_console::{
    self, demo_signature_token, lever_certn_settings, Console, WIZARD_KEY,
};
use switchyard_tests::{eventually, scratch};
use thirtyfour::By;

const LONG: Duration = Duration::from_secs(30);

fn enabled(stack: &switchyard_testkit::Stack) -> bool {
    stack
        .host()
        .app
        .integration(CERTN)
        .is_some_and(|i| i.config.enabled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_form_without_its_sessions_csrf_token_is_refused_and_changes_nothing(
) -> anyhow::Result<()> {
    let stack = support_console::stack("csrf", &["certn"], |_| {}).await?;
    let pause = format!("/console/integrations/{CERTN}/pause");

    // Signing in needs the sign-in form's token too.
    let mut fresh = Console::open(&stack).await;
    let (status, _, _) = fresh
        .post("/console/sign-in", &[("token", TOKEN)], None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let mut op = Console::operator(&stack).await;
    let other = Console::operator(&stack).await;
    for csrf in [None, Some("0000"), Some(other.csrf.as_str())] {
        let (status, _, body) = op.post(&pause, &[], csrf).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{csrf:?}");
        assert!(body.contains("CSRF"), "{body}");
        assert!(enabled(&stack), "nothing changed ({csrf:?})");
    }

    let (status, location, _) = op.act(&pause, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location, "/console/integrations?ok=paused");
    assert!(!enabled(&stack), "paused with the right token");
    let (_, audit) = op.get("/console/audit").await;
    assert!(audit.contains("integration.pause"), "{audit}");
    assert!(
        audit.contains("<code>enabled</code>") && audit.contains("<code>paused</code>"),
        "before and after: {audit}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_viewer_reads_everything_and_every_action_is_refused_and_audited() -> anyhow::Result<()> {
    let stack = support_console::stack("viewer", &["certn"], |_| {}).await?;
    let mut viewer = Console::viewer(&stack).await;
    for page in [
        "/console/events",
        "/console/integrations",
        "/console/connectors",
        "/console/audit",
    ] {
        let (status, body) = viewer.get(page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(body.contains(">viewer<"), "the role is shown: {page}");
    }
    let (_, integrations) = viewer.get("/console/integrations").await;
    assert!(
        !integrations.contains("/pause\""),
        "no action button for a viewer"
    );
    let active = serving(&stack);

    for action in [
        format!("/console/integrations/{CERTN}/pause"),
        "/console/connectors/certn/rollback".to_string(),
        "/console/events/1/retry".to_string(),
    ] {
        let (status, _, body) = viewer.act(&action, &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{action}");
        assert!(body.contains("Viewers can read"), "{body}");
    }
    assert!(enabled(&stack));
    assert_eq!(serving(&stack), active);
    let (_, audit) = viewer.get("/console/audit").await;
    assert_eq!(
        audit.matches("refused: viewers cannot act").count(),
        3,
        "{audit}"
    );
    assert!(audit.contains("viewer (127.0.0.1"), "who: {audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sign_in_is_rate_limited_per_client_address_and_sign_out_ends_the_session(
) -> anyhow::Result<()> {
    let stack = support_console::stack("ratelimit", &["certn"], |_| {}).await?;
    let mut guesser = Console::open(&stack).await;
    for _ in 0..switchyard::http::console::auth::MAX_FAILURES {
        assert_eq!(
            guesser.sign_in("not-the-token-0123456789").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Even the right token is refused now, and no session is opened.
    assert_eq!(guesser.sign_in(TOKEN).await, StatusCode::TOO_MANY_REQUESTS);
    let (status, _) = guesser.get("/console/events").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "still signed out");

    // Another client address is not held back.
    let mut other = Console::open_from(&stack, Some("127.0.0.2".parse()?)).await;
    assert_eq!(other.sign_in(TOKEN).await, StatusCode::SEE_OTHER);
    let (status, _) = other.get("/console/events").await;
    assert_eq!(status, StatusCode::OK);

    // Sign-out ends the session: its cookie opens nothing afterwards.
    let cookie = other.cookie.clone();
    let (status, location, _) = other.act("/console/sign-out", &[]).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/console/sign-in")
    );
    other.cookie = cookie;
    let (status, _) = other.get("/console/events").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_session_cookie_is_http_only_strict_and_secure_behind_https() -> anyhow::Result<()> {
    let plain = support_console::stack("cookie-http", &["certn"], |_| {}).await?;
    let cookie = Console::set_cookie_of_sign_in(&plain).await;
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(!cookie.contains("Secure"), "{cookie}");
    let https = support_console::stack("cookie-https", &["certn"], |c| {
        c.server.public_url = Some("https://switchyard.example.com".into());
    })
    .await?;
    let cookie = Console::set_cookie_of_sign_in(&https).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_a_webhook_carried_is_rendered_unescaped_and_secrets_are_masked(
) -> anyhow::Result<()> {
    let stack = support_console::stack("escaping", &["certn"], |_| {}).await?;
    let evil = "<script>alert(1)</script>";
    let payload = serde_json::json!({
        "token": "webhook-token-value-123",
        "data": { "opportunityId": evil, "note": "<img src=x onerror=alert(2)>" }
    })
    .to_string();
    let store = &stack.host().app.store;
    let id = match store.enqueue(CERTN, "test.escaping", "escaping-1", &payload)? {
        switchyard::store::Enqueued::New(id) => id,
        other => anyhow::bail!("not queued: {other:?}"),
    };
    let mut op = Console::operator(&stack).await;
    let candidate = "%3Cscript%3Ealert(1)%3C%2Fscript%3E";
    for page in [
        "/console/events".to_string(),
        format!("/console/events/{id}"),
        format!("/console/candidates/{candidate}"),
    ] {
        let (status, body) = op.get(&page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(
            !body.contains(evil) && !body.contains("<img src=x"),
            "unescaped in {page}"
        );
        assert!(
            body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "shown as text in {page}"
        );
    }
    let (_, event) = op.get(&format!("/console/events/{id}")).await;
    assert!(
        !event.contains("webhook-token-value-123"),
        "the token is masked"
    );
    assert!(event.contains("(masked)"));
    Ok(())
}

/// The part of `page` from the element with id `id` to the end of its table.
fn table<'a>(page: &'a str, id: &str) -> &'a str {
    let at = page.find(&format!("id=\"{id}\"")).unwrap_or(page.len());
    let rest = &page[at..];
    &rest[..rest.find("</table>").unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_events_list_searches_like_the_admin_api_and_pages_by_cursor() -> anyhow::Result<()> {
    let stack = support_console::stack("filter", &["certn"], |_| {}).await?;
    let store = &stack.host().app.store;
    // A configured-nowhere integration: the worker leaves its events alone or fails them, and
    // neither changes what the text filter finds.
    for n in 0..30 {
        let payload = serde_json::json!({ "data": { "opportunityId": format!("pager-{n:03}") } });
        store.enqueue(
            "ghost",
            "test.filter",
            &format!("pager-{n}"),
            &payload.to_string(),
        )?;
    }
    let other = serde_json::json!({ "data": { "opportunityId": "someone-else" } }).to_string();
    store.enqueue("ghost", "test.filter", "other", &other)?;
    let mut op = Console::operator(&stack).await;

    let (status, first) = op.get("/console/events?candidate=pager-").await;
    assert_eq!(status, StatusCode::OK);
    assert!(first.contains("<strong>30</strong> matching"), "{first}");
    let rows = table(&first, "events");
    assert_eq!(rows.matches(">pager-0").count(), 25, "25 a page");
    assert!(rows.contains("pager-029") && !rows.contains("someone-else"));
    let older = first
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(|h| h.replace("&amp;", "&"))
        .unwrap_or_else(|| panic!("an older page: {first}"));
    assert!(
        older.contains("candidate=pager-") && older.contains("before="),
        "{older}"
    );
    let (_, second) = op.get(&older).await;
    let rows = table(&second, "events");
    assert_eq!(rows.matches(">pager-0").count(), 5, "the rest: {rows}");
    assert!(rows.contains("pager-000") && !rows.contains("pager-029"));
    assert!(!second.contains("id=\"older\""), "the last page");

    // A time range: nothing was received before 2001, everything since.
    let (_, old) = op
        .get("/console/events?candidate=pager-&until=2001-01-01T00:00:00Z")
        .await;
    assert!(old.contains("<strong>0</strong> matching"), "{old}");
    let (_, since) = op
        .get("/console/events?candidate=pager-&since=2001-01-01T00:00")
        .await;
    assert!(since.contains("<strong>30</strong> matching"));
    // Bad input: the form again with the problem, no rows.
    let (status, bad) = op.get("/console/events?since=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(bad.contains("since: `yesterday`"), "{bad}");
    assert!(table(&bad, "events").contains("No event matches"));
    let (status, _) = op.get("/console/events?state=lost").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_page_shows_headers_signature_and_each_call_and_a_forced_replay_invites_nobody_again(
) -> anyhow::Result<()> {
    let stack = support_console::stack("calls", &["certn"], |_| {}).await?;
    let posting = stack.lever.add_posting("Engineer", &["Engineering"]);
    let ada = stack.candidate(
        "Ada Calls",
        Some("ada.calls@example.com"),
        &[],
        Some(&posting),
    );
    assert_eq!(stack.move_to(&ada, TRIGGER).await?, 200);
    stack
        .wait_for(&ada, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await?;
    let store = stack.host().app.store.clone();
    let filter = switchyard::store::search::EventFilter {
        text: Some(ada.clone()),
        state: Some(EventState::Done),
        ..Default::default()
    };
    let trigger = store
        .search_events(&filter, None, 10)?
        .into_iter()
        .find(|e| e.kind != "vendor.status")
        .ok_or_else(|| anyhow::anyhow!("no trigger event"))?;

    let mut op = Console::operator(&stack).await;
    let (status, page) = op.get(&format!("/console/events/{}", trigger.id)).await;
    assert_eq!(status, StatusCode::OK);
    let calls = table(&page, "calls");
    assert!(
        calls.contains("<td>vendor</td>") && calls.contains("<td>ats</td>"),
        "{calls}"
    );
    assert!(
        calls.contains("POST") && calls.contains(" ms</td>"),
        "{calls}"
    );
    assert!(!calls.contains("No call recorded"));
    let headers = table(&page, "headers");
    assert!(
        headers.to_ascii_lowercase().contains("content-type"),
        "{headers}"
    );
    assert!(
        !page.contains("not recorded (not received over HTTP)"),
        "the signature check is shown"
    );
    assert!(
        page.contains("Replay (force)"),
        "a done event can be replayed"
    );

    // A viewer may not; an operator's replay is audited and invites nobody again.
    let mut viewer = Console::viewer(&stack).await;
    let replay = format!("/console/events/{}/replay", trigger.id);
    assert_eq!(viewer.act(&replay, &[]).await.0, StatusCode::FORBIDDEN);
    let invites = stack.certn.invite_requests();
    let (status, location, _) = op.act(&replay, &[]).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        location,
        format!("/console/events/{}?ok=replayed", trigger.id)
    );
    eventually("the replayed event done again", LONG, || {
        let e = store.event_detail(trigger.id).ok()??;
        (e.event.state == EventState::Done && e.attempts_history.len() >= 2).then_some(())
    })
    .await;
    assert_eq!(
        stack.certn.invite_requests(),
        invites,
        "no second invitation"
    );
    assert_eq!(
        stack.certn.invitations_for_email("ada.calls@example.com"),
        1
    );
    let (_, audit) = op.get("/console/audit").await;
    assert!(audit.contains("event.replay"), "{audit}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_replay_by_filter_refuses_over_the_cap_and_replays_dead_letters_once_each(
) -> anyhow::Result<()> {
    let stack = support_console::stack("bulk", &["certn"], |c| {
        c.worker.max_attempts = 2;
        c.worker.retry_base_ms = 50;
        c.worker.breaker_failures = 1_000;
    })
    .await?;
    let store = stack.host().app.store.clone();
    let mut op = Console::operator(&stack).await;

    // Over the cap: refused with the count, nothing started. Events of a kind the ATS does not
    // send dead-letter at once, without calling the vendor.
    let cap = switchyard::http::admin::replay::REPLAY_CAP;
    for n in 0..=cap {
        store.enqueue(
            CERTN,
            "test.bulk",
            &format!("bulk-{n}"),
            r#"{"marker":"bulk-cap"}"#,
        )?;
    }
    let marked = switchyard::store::search::EventFilter {
        text: Some("bulk-cap".into()),
        state: Some(EventState::Dead),
        ..Default::default()
    };
    eventually("every marked event dead", LONG, || {
        (store.count_events(&marked).ok()? == cap + 1).then_some(())
    })
    .await;
    let (status, _, body) = op
        .act(
            "/console/replays",
            &[("candidate", "bulk-cap"), ("state", "dead")],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body.contains(&format!("{} events match", cap + 1)),
        "{body}"
    );
    assert!(store.replay_jobs(10)?.is_empty(), "nothing started");
    let (status, _, _) = op
        .act(
            &format!("/console/integrations/{CERTN}/replay"),
            &[("since", "yesterday")],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(store.replay_jobs(10)?.is_empty(), "nothing started");

    // The vendor is down: each candidate's event dead-letters.
    let since = switchyard::clock::now_ms();
    stack.certn.set_ignore_idempotency_keys(true);
    stack.certn.set_down(true);
    let mut opps = Vec::new();
    for n in 0..3 {
        let email = format!("bulk{n}@example.com");
        let opp = stack.candidate(&format!("Bulk {n}"), Some(&email), &[], None);
        assert_eq!(stack.move_to(&opp, TRIGGER).await?, 200);
        opps.push(opp);
    }
    let outage = switchyard::store::search::EventFilter {
        integrations: Some(vec![CERTN.into()]),
        state: Some(EventState::Dead),
        since_ms: Some(since),
        ..Default::default()
    };
    eventually("three dead letters", LONG, || {
        (store.count_events(&outage).ok()? == 3).then_some(())
    })
    .await;
    let since = since.to_string();
    let fields = [
        ("integration", CERTN),
        ("state", "dead"),
        ("since", since.as_str()),
    ];
    let (_, list) = op
        .get(&format!(
            "/console/events?integration={CERTN}&state=dead&since={since}"
        ))
        .await;
    assert!(list.contains("Replay all 3 matching"), "{list}");

    // Fixed: replay all matching, from the list's form.
    stack.certn.set_down(false);
    let (status, location, body) = op.act("/console/replays", &fields).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    assert_eq!(location, "/console/replays?ok=replay-started");
    for opp in &opps {
        stack
            .wait_for(opp, LONG, |o| {
                o.tags.contains(&"CERTN - Complete".to_string())
            })
            .await?;
    }
    for n in 0..3 {
        let email = format!("bulk{n}@example.com");
        assert_eq!(stack.certn.invitations_for_email(&email), 1, "{email}");
    }
    let job = eventually("the job done", LONG, || {
        let job = store.replay_jobs(1).ok()?.into_iter().next()?;
        (job.pending == 0).then_some(job)
    })
    .await;
    assert_eq!((job.total, job.queued), (3, 3), "{job:?}");
    let (_, jobs) = op.get("/console/replays").await;
    let rows = table(&jobs, "replays");
    assert!(
        rows.contains("<td>3</td>") && rows.contains("done"),
        "{rows}"
    );
    let (_, audit) = op.get("/console/audit").await;
    assert!(audit.contains("replay.start"), "{audit}");
    assert!(
        audit.contains(&format!("refused: {} events match", cap + 1)),
        "{audit}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pictures_page_draws_escaped_svg_with_its_numbers_in_tables() -> anyhow::Result<()> {
    let stack = support_console::stack("pictures", &["certn"], |_| {}).await?;
    let store = &stack.host().app.store;
    let evil = "<b>evil</b>";
    store.enqueue(evil, "test.pictures", "pictures-1", "{}")?;
    store.enqueue(evil, "test.pictures", "pictures-2", "{}")?;
    let mut viewer = Console::viewer(&stack).await;
    let (status, page) = viewer.get("/console/pictures?hours=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("<svg").count(), 4, "four pictures");
    assert!(!page.contains(evil), "escaped everywhere");
    assert!(
        page.contains("&lt;b&gt;evil&lt;/b&gt;"),
        "the integration is named"
    );
    let numbers = table(&page, "events-per-minute");
    assert!(
        numbers.contains("<td>2</td>"),
        "two events this minute: {numbers}"
    );
    assert!(table(&page, "queue").contains("<td>"));
    assert!(table(&page, "latency").contains("Connector version"));
    let (status, _) = viewer.get("/console/pictures?hours=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    Ok(())
}

/// Clicks the element `css` selects.
/// Waits (bounded) until the browser shows a page whose path ends with `suffix`: a click's
/// navigation completes after `click` returns, later on a loaded machine.
async fn at_path(browser: &thirtyfour::WebDriver, suffix: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if browser.current_url().await?.path().ends_with(suffix) {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the browser never reached a page ending in {suffix}")
}

async fn click(browser: &thirtyfour::WebDriver, css: &str) -> anyhow::Result<()> {
    browser.find(By::Css(css)).await?.click().await?;
    Ok(())
}

/// The text of the element `css` selects.
async fn text(browser: &thirtyfour::WebDriver, css: &str) -> anyhow::Result<String> {
    Ok(browser.find(By::Css(css)).await?.text().await?)
}

/// Waits (bounded) until the page's notice says `expected` (the page after a form's redirect);
/// returns it.
async fn notice(browser: &thirtyfour::WebDriver, expected: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The previous page's notice may still be there, or go stale under the read.
        if let Ok(text) = text(browser, ".notice").await {
            if text.contains(expected) {
                return text;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no notice saying {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The serving Certn version's tag.
fn serving(stack: &switchyard_testkit::Stack) -> Option<String> {
    stack
        .host()
        .app
        .registry
        .get("certn")
        .map(|c| c.version_tag())
}

/// Saves the page's screenshot as `docs/console/<name>.png`.
async fn shot(browser: &thirtyfour::WebDriver, name: &str) -> anyhow::Result<()> {
    let png = browser.screenshot_as_png().await?;
    std::fs::write(
        support_console::screenshots_dir().join(format!("{name}.png")),
        png,
    )?;
    Ok(())
}

/// Fills the field named `name` of the page's form with `value` (replacing what it shows).
async fn fill(browser: &thirtyfour::WebDriver, name: &str, value: &str) -> anyhow::Result<()> {
    let input = browser.find(By::Name(name)).await?;
    input.clear().await?;
    input.send_keys(value).await?;
    Ok(())
}

/// Picks `value` in the select named `name`.
async fn choose(browser: &thirtyfour::WebDriver, name: &str, value: &str) -> anyhow::Result<()> {
    click(
        browser,
        &format!("select[name='{name}'] option[value='{value}']"),
    )
    .await
}

/// Runs the setup wizard in the browser: `demo-certn` again, Lever (API key) → Certn, with a
/// rule sending Premium to `posting`'s candidates. Screenshots of each step.
async fn wizard(
    browser: &thirtyfour::WebDriver,
    stack: &switchyard_testkit::Stack,
    base: &str,
    posting: &str,
) -> anyhow::Result<()> {
    browser.goto(format!("{base}/console/integrations")).await?;
    click(browser, "#set-up").await?;
    at_path(browser, "/console/wizard").await?;
    fill(browser, "id", CERTN).await?;
    click(browser, "input[name=ats][value=lever]").await?;
    choose(browser, "connector", "certn").await?;
    shot(browser, "wizard-1-start").await?;
    click(browser, "#wizard-start button[type=submit]").await?;
    at_path(browser, "/console/wizard/settings").await?;

    let key = stack.lever.generate_api_key(&WIZARD_KEY);
    let token = demo_signature_token(stack);
    click(browser, "input[name=lever_auth][value=api_key]").await?;
    click(browser, "input[name=allow_loopback]").await?;
    for (name, value) in lever_certn_settings(stack, CERTN, &key, &token) {
        let hidden = ["id", "ats", "connector", "lever_auth", "allow_loopback"];
        if name == "default_package" || hidden.contains(&name.as_str()) {
            continue;
        }
        fill(browser, &name, &value).await?;
    }
    shot(browser, "wizard-2-settings").await?;
    click(browser, "#wizard-settings button[type=submit]").await?;
    at_path(browser, "/rules").await?;
    let source = browser.source().await?;
    assert!(
        !source.contains(&key) && !source.contains(&token),
        "no secret echoed"
    );

    choose(browser, "trigger_stage", TRIGGER).await?;
    choose(browser, "rule.0.posting", posting).await?;
    choose(browser, "rule.0.package", "Premium").await?;
    shot(browser, "wizard-3-rules").await?;
    click(browser, "#wizard-rules button[type=submit]").await?;
    at_path(browser, "/finish").await?;
    let urls = text(browser, "#urls").await?;
    assert!(urls.contains("/hooks/demo-certn/lever"), "{urls}");
    shot(browser, "wizard-4-finish").await?;
    click(browser, "#wizard-finish button[type=submit]").await?;
    notice(browser, "Set up").await;
    assert!(enabled(stack), "verified and enabled");
    Ok(())
}

/// The tour in a real browser: sign in, set up `demo-certn` with the wizard, an event of a moved
/// candidate and its timeline, dead letters bulk-replayed by filter after a vendor outage, a
/// connector version uploaded and rolled back, the audit log, sign-out. Each page's screenshot
/// goes to `docs/console/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_browser() -> anyhow::Result<()> {
    let stack = support_console::stack("browser", &["certn"], |c| {
        c.worker.max_attempts = 2;
    })
    .await?;
    let base = format!("http://{}", stack.addr);
    let driver = support_console::driver().await;
    let browser = support_console::browser(&driver).await;
    // The wizard sets the stack's integration up again, as an operator would.
    let (status, body) = Admin::new(&stack, Some(TOKEN))
        .call(
            Method::DELETE,
            &format!("/admin/integrations/{CERTN}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let posting = stack.lever.add_posting("Engineer", &["Engineering"]);

    // Signed out, the console shows the sign-in page.
    browser.goto(format!("{base}/console/events")).await?;
    at_path(&browser, "/console/sign-in").await?;
    shot(&browser, "sign-in").await?;
    browser
        .find(By::Css("#token"))
        .await?
        .send_keys(TOKEN)
        .await?;
    click(&browser, "button[type=submit]").await?;
    at_path(&browser, "/console/events").await?;
    wizard(&browser, &stack, &base, &posting).await?;

    // A candidate goes through, with the rule's package.
    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    assert_eq!(stack.move_to(&ada, TRIGGER).await?, 200);
    stack
        .wait_for(&ada, LONG, |o| {
            o.tags.contains(&"CERTN - Complete".to_string())
        })
        .await?;
    let ordered: Vec<String> = stack
        .certn
        .applications()
        .into_iter()
        .map(|a| a.package)
        .collect();
    assert_eq!(ordered, ["Premium"]);

    // The candidate's event, its page and the timeline.
    browser.goto(format!("{base}/console/events")).await?;
    let source = browser.source().await?;
    assert!(source.contains(&ada), "the candidate's event is listed");
    shot(&browser, "events").await?;
    browser
        .find(By::XPath(format!("//tr[td/a[text()='{ada}']]/td[1]/a")))
        .await?
        .click()
        .await?;
    let event = text(&browser, "#payload").await?;
    assert!(event.contains("(masked)"), "{event}");
    shot(&browser, "event").await?;
    browser
        .find(By::LinkText(format!("{ada} — timeline")))
        .await?
        .click()
        .await?;
    let timeline = text(&browser, "#timeline").await?;
    assert!(
        timeline.contains("Webhook accepted") && timeline.contains("Connector invoked"),
        "{timeline}"
    );
    shot(&browser, "timeline").await?;

    // The vendor is down: two candidates' events dead-letter; after the fix, replay every dead
    // letter of the integration by filter (the confirmation accepted).
    stack.certn.set_down(true);
    let bob = stack.candidate("Bob Byte", Some("bob@example.com"), &[], Some(&posting));
    let cy = stack.candidate("Cy Young", Some("cy@example.com"), &[], Some(&posting));
    for who in [&bob, &cy] {
        assert_eq!(stack.move_to(who, TRIGGER).await?, 200);
    }
    let store = stack.host().app.store.clone();
    eventually("both events dead-lettered", LONG, || {
        let dead = store
            .list_events(Some(CERTN), Some(EventState::Dead), 10)
            .ok()?;
        (dead.len() >= 2).then_some(())
    })
    .await;
    stack.certn.set_down(false);
    browser
        .goto(format!(
            "{base}/console/events?state=dead&integration={CERTN}"
        ))
        .await?;
    shot(&browser, "dead-letters").await?;
    click(&browser, "#bulk-replay button[type=submit]").await?;
    browser.accept_alert().await?;
    notice(&browser, "Replay job started").await;
    for who in [&bob, &cy] {
        stack
            .wait_for(who, LONG, |o| {
                o.tags.contains(&"CERTN - Complete".to_string())
            })
            .await?;
    }

    // Upload a new version (activated), then roll back to the original.
    let original = serving(&stack);
    let upload = scratch("console-upload");
    let file = upload.join("certn-v2.wasm");
    std::fs::write(&file, variant(&plugin("certn"), "console-v2"))?;
    browser.goto(format!("{base}/console/connectors")).await?;
    browser
        .find(By::Css("#upload input[type=file]"))
        .await?
        .send_keys(file.display().to_string())
        .await?;
    click(&browser, "#upload input[name=activate]").await?;
    click(&browser, "#upload button[type=submit]").await?;
    notice(&browser, "Activated").await;
    assert_ne!(serving(&stack), original);
    shot(&browser, "connectors").await?;
    click(&browser, "form[action$='/rollback'] button").await?;
    notice(&browser, "Rolled back").await;
    assert_eq!(serving(&stack), original);

    browser.goto(format!("{base}/console/integrations")).await?;
    let card = text(&browser, "section.integration").await?;
    assert!(card.contains("/hooks/demo-certn/vendor"), "{card}");
    shot(&browser, "integrations").await?;

    // The pictures, each with its numbers; the replay jobs page.
    browser.goto(format!("{base}/console/pictures")).await?;
    let latency = text(&browser, "#latency").await?;
    assert!(latency.contains("certn@"), "{latency}");
    shot(&browser, "pictures").await?;
    browser.goto(format!("{base}/console/replays")).await?;
    shot(&browser, "replays").await?;

    // The audit log has each action, with before and after.
    browser.goto(format!("{base}/console/audit")).await?;
    let audit = text(&browser, "#audit").await?;
    for action in [
        "session.sign_in",
        "integration.create",
        "integration.rules",
        "integration.verify_and_enable",
        "replay.start",
        "connector.upload",
        "connector.rollback",
    ] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
    shot(&browser, "audit").await?;

    // Sign out: back to the sign-in page, and the console is closed.
    click(&browser, "form[action='/console/sign-out'] button").await?;
    at_path(&browser, "/console/sign-in").await?;
    browser.goto(format!("{base}/console/audit")).await?;
    at_path(&browser, "/console/sign-in").await?;
    browser.quit().await?;
    drop(driver);
    Ok(())
}
