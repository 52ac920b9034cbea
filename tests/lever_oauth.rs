//! Lever as an authorized app, end to end over real HTTP against the Lever simulator's OAuth
//! server: connect (authorize redirect → callback → tokens), Bearer writes, refresh before
//! expiry and on a 401 with rotated refresh tokens, revocation in Lever → disconnected and off
//! (candidates moved meanwhile recorded as not sent, replayed only by an operator, once each),
//! events of a never-connected integration waiting for the first connect, disconnecting from our
//! side, bad callbacks, and the Verify Connection ping. No token or client secret in any response or log line.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use switchyard::config::{AtsConfig, Secret};
use switchyard::store::{EventState, WaitFor};
use switchyard_testkit::lever_oauth::{browser_connect, simulator_app};
use switchyard_testkit::{Stack, CERTN, TRIGGER};
use switchyard_tests::{eventually, lever_of, options};

const TOKEN: &str = "test-admin-token-oauth-0123456789";
const LONG: Duration = Duration::from_secs(40);
const COMPLETE: &str = "CERTN - Complete";

/// Every log line of this test binary (all tests share the process-wide subscriber).
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .try_init();
        buf
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stack whose Certn integration is connected through the host's Lever OAuth app (no API
/// key), with the admin API on. `ttl`: the simulator's access-token lifetime for the grant.
struct OAuthStack {
    stack: Stack,
    client_id: String,
    client_secret: String,
    http: reqwest::Client,
}

async fn oauth_stack(name: &str, adjust: impl FnOnce(&mut switchyard::Config)) -> OAuthStack {
    logs();
    let mut stack = Stack::prepare(options(name, |_| {}))
        .await
        .expect("stack prepared");
    let app = simulator_app(&stack.lever, &format!("http://{}", stack.addr));
    let (client_id, client_secret) = (
        app.client_id.clone(),
        app.client_secret.expose().to_string(),
    );
    stack.config.lever_oauth = Some(app);
    stack.config.server.admin_token = Some(Secret::new(TOKEN));
    if let AtsConfig::Lever(l) = &mut stack.config.integrations[0].ats {
        l.api_key = None;
        l.oauth = true;
    }
    adjust(&mut stack.config);
    OAuthStack {
        stack: stack.run().await.expect("host starts"),
        client_id,
        client_secret,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
    }
}

impl OAuthStack {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.stack.addr)
    }

    /// An admin call: status and JSON body.
    async fn admin(&self, method: Method, path: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .request(method, self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("admin call");
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn view(&self) -> Value {
        let (status, body) = self
            .admin(Method::GET, &format!("/admin/integrations/{CERTN}"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.assert_clean(&body.to_string());
        body
    }

    /// The secrets that must never show: the client secret and every stored token.
    fn secrets(&self) -> Vec<String> {
        let mut out = vec![self.client_secret.clone()];
        if let Some(t) = self.stack.host().app.store.oauth_tokens(CERTN).unwrap() {
            out.push(t.access_token.expose().to_string());
            out.extend(t.refresh_token.map(|r| r.expose().to_string()));
        }
        out
    }

    fn assert_clean(&self, text: &str) {
        for secret in self.secrets() {
            assert!(!text.contains(&secret), "a secret leaked into: {text}");
        }
    }

    /// Asserts no captured log line holds `secrets`.
    fn assert_logs_clean(&self, secrets: &[String]) {
        let logs = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
        assert!(!logs.is_empty(), "logs are captured");
        for secret in secrets {
            assert!(
                !logs.contains(secret.as_str()),
                "a secret leaked into the logs"
            );
        }
    }

    /// The callback's answer for a query string (JSON unless `html`).
    async fn callback(&self, query: &str, html: bool) -> (StatusCode, String) {
        let accept = if html {
            "text/html"
        } else {
            "application/json"
        };
        let resp = self
            .http
            .get(self.url(&format!("/oauth/lever/callback?{query}")))
            .header("accept", accept)
            .send()
            .await
            .expect("callback");
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        self.assert_clean(&text);
        (status, text)
    }

    /// Follows a fresh connect link to the simulator's authorize page; returns the query the
    /// simulator redirected back with (code/state or error/state), without calling us.
    async fn consent(&self) -> String {
        let (status, body) = self
            .admin(
                Method::POST,
                &format!("/admin/integrations/{CERTN}/lever/connect"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let authorize = body["authorize_url"].as_str().expect("a link").to_string();
        let resp = self.http.get(&authorize).send().await.expect("authorize");
        assert_eq!(resp.status(), StatusCode::FOUND);
        let back = resp.headers()["location"].to_str().unwrap().to_string();
        assert!(
            back.starts_with(&self.url("/oauth/lever/callback?")),
            "{back}"
        );
        back.split_once('?').unwrap().1.to_string()
    }

    async fn connect(&self) -> Value {
        let answer = browser_connect(&self.stack.host().app, CERTN)
            .await
            .expect("connected");
        self.assert_clean(&answer.to_string());
        answer
    }

    /// A candidate moved into the trigger stage; returns the opportunity id.
    async fn screen(&self, name: &str) -> String {
        let opp = self.stack.candidate(name, Some("c@example.com"), &[], None);
        assert_eq!(self.stack.move_to(&opp, TRIGGER).await.unwrap(), 200);
        opp
    }

    /// Waits until `n` trigger events are recorded as not sent (revoke means off); their ids.
    async fn not_sent(&self, n: usize) -> Vec<i64> {
        eventually("events recorded as not sent", LONG, || {
            let events = self.stack.host().app.store.events(CERTN, 100).unwrap();
            let ids: Vec<i64> = events
                .iter()
                .filter(|e| {
                    e.state == EventState::Skipped
                        && e.last_error
                            .as_deref()
                            .is_some_and(|r| r.starts_with("not sent: "))
                })
                .map(|e| e.id)
                .collect();
            (ids.len() == n).then_some(ids)
        })
        .await
    }

    /// An operator's replay of one event.
    async fn retry(&self, id: i64) -> StatusCode {
        self.admin(Method::POST, &format!("/admin/events/{id}/retry"))
            .await
            .0
    }

    async fn completes(&self, opp: &str) {
        self.stack
            .wait_for(opp, LONG, |o| o.tags.contains(&COMPLETE.to_string()))
            .await
            .expect("screening completes");
    }

    /// A refresh at the simulator with `refresh_token`, as any client would: status and body.
    async fn sim_refresh(&self, refresh_token: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(self.stack.lever.oauth_token_url())
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .expect("token endpoint");
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or_default(),
        )
    }

    /// `GET /v1/stages` at the simulator with a Bearer token: the status.
    async fn sim_api(&self, access_token: &str) -> u16 {
        self.http
            .get(format!("{}/stages", self.stack.lever.api_base()))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("api")
            .status()
            .as_u16()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    fn stored_refresh(&self) -> String {
        let t = self.stack.host().app.store.oauth_tokens(CERTN).unwrap();
        t.and_then(|t| t.refresh_token)
            .map(|r| r.expose().to_string())
            .expect("a refresh token")
    }
}

fn query_param(url: &str, key: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_redirects_to_lever_the_callback_stores_tokens_and_the_flow_writes_with_bearer() {
    let s = oauth_stack("connect", |_| {}).await;
    assert_eq!(
        s.view().await["connection"]["oauth"]["status"],
        "not_connected"
    );

    // The connect link redirects to Lever's authorize page with every parameter.
    let resp = s
        .http
        .get(s.url(&format!("/admin/integrations/{CERTN}/lever/connect")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    s.assert_clean(&location);
    assert!(
        location.starts_with(&s.stack.lever.oauth_authorize_url()),
        "{location}"
    );
    let p = |k| query_param(&location, k);
    assert_eq!(p("client_id"), Some(s.client_id.clone()));
    assert_eq!(p("response_type").as_deref(), Some("code"));
    assert_eq!(p("redirect_uri"), Some(s.url("/oauth/lever/callback")));
    assert_eq!(p("audience").as_deref(), Some("https://api.lever.co/v1/"));
    assert_eq!(p("code_challenge_method").as_deref(), Some("S256"));
    assert!(p("code_challenge").is_some_and(|c| c.len() >= 43));
    assert!(p("state").is_some_and(|st| st.len() >= 16));
    let scopes = p("scope").unwrap_or_default();
    for scope in [
        "offline_access",
        "opportunities:write:admin",
        "notes:write:admin",
    ] {
        assert!(scope.split(' ').any(|x| x == scope), "{scope} in {scopes}");
    }
    // Without the admin token: no link.
    let anon = s
        .http
        .get(s.url(&format!("/admin/integrations/{CERTN}/lever/connect")))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), StatusCode::UNAUTHORIZED);
    // An API-key integration has nothing to connect.
    let mut other = s.stack.config.integrations[0].clone();
    other.id = "keyed".into();
    if let AtsConfig::Lever(l) = &mut other.ats {
        l.oauth = false;
        l.api_key = Some(Secret::new(s.stack.lever.api_key()));
    }
    s.stack.host().app.put_integration(other).unwrap();
    let (status, body) = s
        .admin(Method::POST, "/admin/integrations/keyed/lever/connect")
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Before the first grant, an event waits (no attempt burnt) instead of failing.
    let early = s.screen("Early Bird").await;
    eventually("the early event waits for the connect", LONG, || {
        let store = &s.stack.host().app.store;
        (store.waiting_for(CERTN, WaitFor::Connect).unwrap() == 1).then_some(())
    })
    .await;

    let answer = s.connect().await;
    assert_eq!(answer["status"], "connected");
    assert_eq!(answer["resumed_events"], 1);
    let asked = s.stack.lever.authorize_requests();
    assert_eq!(asked.last().map(|a| a.outcome.as_str()), Some("code"));
    let view = s.view().await;
    let oauth = &view["connection"]["oauth"];
    assert_eq!(oauth["status"], "connected", "{view}");
    assert_eq!(oauth["has_refresh_token"], true);
    assert!(oauth["access_token_expires_at"].is_string());
    assert_eq!(view["ats"]["api_key_set"], false);

    // The whole flow reads and writes Lever with the Bearer token: tags, link.
    s.completes(&early).await;
    let opp = s.screen("Grace Hopper").await;
    s.completes(&opp).await;
    let done = s.stack.lever.opportunity(&opp).unwrap();
    assert_eq!(done.links.len(), 1, "{done:?}");
    assert_eq!(s.stack.lever.unauthorized_api_calls(), 0);
    assert_eq!(s.stack.lever.token_requests().authorization_code, 1);
    assert!(s
        .metrics()
        .await
        .contains("switchyard_lever_oauth_total{outcome=\"code_exchanged\"} 1"));
    s.assert_logs_clean(&s.secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_token_is_refreshed_before_it_expires_and_the_rotated_refresh_token_kept() {
    let s = oauth_stack("refresh", |_| {}).await;
    // The grant's access token lives 60 s: inside the 300 s margin, so it is refreshed first.
    s.stack.lever.set_access_token_ttl(Duration::from_secs(60));
    s.connect().await;
    let first_refresh = s.stored_refresh();
    s.stack
        .lever
        .set_access_token_ttl(Duration::from_secs(3600));

    let opp = s.screen("Ada").await;
    s.completes(&opp).await;
    let requests = s.stack.lever.token_requests();
    assert_eq!(requests.refresh_token, 1, "{requests:?}");
    assert_eq!(requests.refused, 0);
    assert_eq!(
        s.stack.lever.unauthorized_api_calls(),
        0,
        "refreshed before expiry, never a 401"
    );
    let rotated = s.stored_refresh();
    assert_ne!(rotated, first_refresh, "the rotated refresh token is kept");
    let view = s.view().await;
    assert!(
        view["connection"]["oauth"]["refreshed_at"].is_string(),
        "{view}"
    );
    // The old refresh token is dead at Lever; the kept one works.
    let (status, body) = s.sim_refresh(&first_refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let secrets = [s.secrets(), vec![first_refresh]].concat();
    s.assert_logs_clean(&secrets);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_refreshes_once_then_the_call_succeeds_again_and_again() {
    let s = oauth_stack("on401", |_| {}).await;
    s.connect().await;
    let mut seen = vec![s.stored_refresh()];
    for round in 1..=2 {
        // Lever expires the tokens early (clock skew, rotation): the API answers 401.
        s.stack.lever.force_expire_access_tokens();
        let opp = s.screen(&format!("Round {round}")).await;
        s.completes(&opp).await;
        assert_eq!(
            s.stack.lever.unauthorized_api_calls(),
            round,
            "one 401 per expiry"
        );
        let requests = s.stack.lever.token_requests();
        assert_eq!(requests.refresh_token, round, "{requests:?}");
        assert_eq!(requests.refused, 0, "never a rotated-away refresh token");
        let now = s.stored_refresh();
        assert!(!seen.contains(&now), "a new refresh token each time");
        seen.push(now);
    }
    assert!(s
        .metrics()
        .await
        .contains("switchyard_lever_oauth_total{outcome=\"refreshed\"} 2"));
    // The last event's outcome is committed after its ATS write: wait for it.
    switchyard_tests::eventually("every event done", Duration::from_secs(30), || {
        let events = s.stack.host().app.store.events(CERTN, 100).ok()?;
        events
            .iter()
            .all(|e| e.state == EventState::Done)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_in_lever_the_integration_is_off_and_an_operator_replays_what_was_not_sent() {
    let s = oauth_stack("revoke", |_| {}).await;
    s.connect().await;
    let before = s.screen("Before").await;
    s.completes(&before).await;
    let old = s.secrets();

    // "Settings > Integrations and API > Authorized Apps > Revoke Access" (seeds 003, 004: to
    // disable the integration).
    assert_eq!(s.stack.lever.revoke_app(&s.client_id), 1);
    let during = [s.screen("During One").await, s.screen("During Two").await];
    let not_sent = s.not_sent(2).await;
    let app = &s.stack.host().app;
    assert!(app.store.oauth_tokens(CERTN).unwrap().is_none());
    let view = s.view().await;
    let oauth = &view["connection"]["oauth"];
    assert_eq!(oauth["status"], "disconnected", "{view}");
    assert!(oauth["disconnected_at"].is_string());
    let reason = oauth["disconnect_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("invalid_grant"), "{reason}");
    assert_eq!(oauth["waiting_events"], 0);
    assert!(s
        .metrics()
        .await
        .contains("switchyard_lever_oauth_total{outcome=\"revoked\"} 1"));

    // Recorded with the reason, nothing written, nobody invited.
    let events = app.store.events(CERTN, 100).unwrap();
    assert!(
        !events.iter().any(|e| e.state == EventState::Dead),
        "{events:?}"
    );
    for opp in &during {
        let o = s.stack.lever.opportunity(opp).unwrap();
        assert!(o.tags.is_empty() && o.links.is_empty(), "{o:?}");
    }
    assert_eq!(
        s.stack.certn.applications().len(),
        1,
        "only the first candidate invited"
    );

    // Reconnecting turns it on again but sends nothing by itself.
    let answer = s.connect().await;
    assert_eq!(answer["resumed_events"], 0, "{answer}");
    let later = s.screen("After Reconnect").await;
    s.completes(&later).await;
    assert_eq!(s.stack.certn.applications().len(), 2);
    for opp in &during {
        assert!(s.stack.lever.opportunity(opp).unwrap().tags.is_empty());
    }

    // An operator replays them on purpose: one invitation each, even replayed twice.
    for id in &not_sent {
        assert_eq!(s.retry(*id).await, StatusCode::OK);
    }
    for opp in &during {
        s.completes(opp).await;
    }
    for id in &not_sent {
        assert_eq!(s.retry(*id).await, StatusCode::CONFLICT, "done: not again");
    }
    assert_eq!(s.stack.certn.applications().len(), 4);
    assert_eq!(s.view().await["connection"]["oauth"]["status"], "connected");
    s.assert_logs_clean(&[old, s.secrets()].concat());
}

#[tokio::test(flavor = "multi_thread")]
async fn disconnecting_from_our_side_revokes_the_grant_at_lever_and_deletes_the_tokens() {
    let s = oauth_stack("disconnect", |_| {}).await;
    s.connect().await;
    let tokens = s
        .stack
        .host()
        .app
        .store
        .oauth_tokens(CERTN)
        .unwrap()
        .unwrap();
    let access = tokens.access_token.expose().to_string();
    assert_eq!(s.sim_api(&access).await, 200);
    let secrets = s.secrets();

    let (status, body) = s
        .admin(
            Method::POST,
            &format!("/admin/integrations/{CERTN}/lever/disconnect"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revoked_at_lever"], true, "{body}");
    for secret in &secrets {
        assert!(!body.to_string().contains(secret.as_str()));
    }
    assert!(s
        .stack
        .host()
        .app
        .store
        .oauth_tokens(CERTN)
        .unwrap()
        .is_none());
    assert_eq!(s.sim_api(&access).await, 401, "revoked at Lever");
    let view = s.view().await;
    let oauth = &view["connection"]["oauth"];
    assert_eq!(oauth["status"], "disconnected");
    assert_eq!(oauth["disconnect_reason"], "disconnected by the operator");

    // The integration is off: a candidate moved now is not sent; a second disconnect is
    // harmless; after reconnecting, an operator's replay sends it.
    let opp = s.screen("Later").await;
    let not_sent = s.not_sent(1).await;
    let (status, body) = s
        .admin(
            Method::DELETE,
            &format!("/admin/integrations/{CERTN}/lever/disconnect"),
        )
        .await;
    assert_eq!(
        (status, body["had_tokens"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    s.connect().await;
    assert_eq!(s.retry(not_sent[0]).await, StatusCode::OK);
    s.completes(&opp).await;

    // Deleting the integration revokes its new grant too.
    let fresh = s
        .stack
        .host()
        .app
        .store
        .oauth_tokens(CERTN)
        .unwrap()
        .unwrap();
    let fresh = fresh.access_token.expose().to_string();
    assert_eq!(s.sim_api(&fresh).await, 200);
    let (status, _) = s
        .admin(Method::DELETE, &format!("/admin/integrations/{CERTN}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s.sim_api(&fresh).await, 401, "revoked at Lever on delete");
    assert!(s
        .stack
        .host()
        .app
        .store
        .oauth_tokens(CERTN)
        .unwrap()
        .is_none());
    s.assert_logs_clean(&[secrets, vec![fresh]].concat());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_callbacks_get_a_clear_error_and_store_nothing() {
    let s = oauth_stack("badcallback", |_| {}).await;
    let store = &s.stack.host().app.store;
    let nothing = || assert!(store.oauth_tokens(CERTN).unwrap().is_none());

    // Unknown state (JSON and the browser's page), no state.
    let (status, body) = s.callback("code=abc&state=not-ours", false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("unknown_state"), "{body}");
    let (status, page) = s.callback("code=abc&state=not-ours", true).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Could not connect to Lever"), "{page}");
    let (status, body) = s.callback("code=abc", false).await;
    assert_eq!(
        (status, body.contains("missing_state")),
        (StatusCode::BAD_REQUEST, true)
    );
    nothing();

    // Lever's error (the user clicked Deny).
    s.stack.lever.set_oauth_user_denies(true);
    let denied = s.consent().await;
    s.stack.lever.set_oauth_user_denies(false);
    assert!(denied.contains("error=access_denied"), "{denied}");
    let (status, body) = s.callback(&denied, false).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body.contains("lever_error") && body.contains("access_denied"),
        "{body}"
    );
    nothing();

    // Expired: a state that outlived its lifetime.
    store
        .oauth_put_state("expired-state-0123456789", CERTN, "verifier", 0)
        .unwrap();
    let (status, body) = s
        .callback("code=abc&state=expired-state-0123456789", false)
        .await;
    assert_eq!(
        (status, body.contains("state_expired")),
        (StatusCode::BAD_REQUEST, true),
        "{body}"
    );
    nothing();
    assert_eq!(
        s.stack.lever.token_requests().authorization_code,
        0,
        "no exchange attempted"
    );

    // Reused: the first use connects, the second is refused and changes nothing.
    let good = s.consent().await;
    let (status, body) = s.callback(&good, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = store.oauth_tokens(CERTN).unwrap().unwrap();
    let (status, body) = s.callback(&good, false).await;
    assert_eq!(
        (status, body.contains("state_used")),
        (StatusCode::BAD_REQUEST, true),
        "{body}"
    );
    let after = store.oauth_tokens(CERTN).unwrap().unwrap();
    assert_eq!(
        after.access_token, stored.access_token,
        "nothing stored by the reuse"
    );
    assert_eq!(s.stack.lever.token_requests().authorization_code, 1);
    s.assert_logs_clean(&s.secrets());
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_connection_ping_is_recorded_and_shown() {
    let s = oauth_stack("verify", |_| {}).await;
    assert!(s.view().await["connection"]["last_verified_at"].is_null());
    let token = lever_of(&s.stack.config.integrations[0])
        .signature_token
        .expose()
        .to_string();
    let url = s.url(&format!("/hooks/{CERTN}/lever"));
    assert_eq!(
        s.stack.lever.send_test_ping(&url, &token).await.unwrap(),
        200
    );
    let view = s.view().await;
    assert!(view["connection"]["last_verified_at"].is_string(), "{view}");
    // No side effect: no event stored. A forged ping records nothing.
    assert!(s
        .stack
        .host()
        .app
        .store
        .events(CERTN, 10)
        .unwrap()
        .is_empty());
    let before = s
        .stack
        .host()
        .app
        .store
        .connection(CERTN)
        .unwrap()
        .verified_at;
    assert_eq!(
        s.stack
            .lever
            .send_test_ping(&url, "wrong-token")
            .await
            .unwrap(),
        401
    );
    assert_eq!(
        s.stack
            .host()
            .app
            .store
            .connection(CERTN)
            .unwrap()
            .verified_at,
        before
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_right_after_a_refresh_disconnects_instead_of_retrying_forever() {
    let s = oauth_stack("401after", |_| {}).await;
    s.connect().await;
    // The API refuses the token, and again the fresh one: the grant is not honoured any more.
    s.stack.lever.fail_next(2, 401);
    let opp = s.screen("Refused").await;
    let not_sent = s.not_sent(1).await;
    assert_eq!(
        s.stack.lever.token_requests().refresh_token,
        1,
        "one refresh, not more"
    );
    let view = s.view().await;
    let oauth = &view["connection"]["oauth"];
    assert_eq!(oauth["status"], "disconnected", "{view}");
    assert!(
        oauth["disconnect_reason"]
            .as_str()
            .is_some_and(|r| r.contains("401 to a freshly refreshed access token")),
        "{view}"
    );
    assert!(s.stack.lever.opportunity(&opp).unwrap().tags.is_empty());
    s.connect().await;
    assert_eq!(s.retry(not_sent[0]).await, StatusCode::OK);
    s.completes(&opp).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_after_an_expiry_share_one_refresh() {
    // Four workers, four candidates at once, all holding the same expired token.
    let s = oauth_stack("concurrent", |c| c.worker.concurrency = 4).await;
    s.connect().await;
    s.stack.lever.force_expire_access_tokens();
    let mut opps = Vec::new();
    for i in 0..4 {
        opps.push(s.screen(&format!("Parallel {i}")).await);
    }
    for opp in &opps {
        s.completes(opp).await;
    }
    let requests = s.stack.lever.token_requests();
    assert_eq!(
        requests.refresh_token, 1,
        "serialized: one refresh for all {requests:?}"
    );
    assert_eq!(
        requests.refused, 0,
        "no rotated-away refresh token presented"
    );
    assert_eq!(s.view().await["connection"]["oauth"]["status"], "connected");
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_and_connect_links_survive_a_restart() {
    let s = oauth_stack("restart", |_| {}).await;
    s.connect().await;
    let pending = s.consent().await; // a link opened before the restart, used after it
    let OAuthStack {
        mut stack,
        client_id,
        client_secret,
        http,
    } = s;
    if let Some(host) = stack.host.take() {
        host.shutdown().await;
    }
    let s = OAuthStack {
        stack: stack.run().await.expect("host restarts"),
        client_id,
        client_secret,
        http,
    };
    let opp = s.screen("After Restart").await;
    s.completes(&opp).await;
    assert_eq!(
        s.stack.lever.token_requests().authorization_code,
        1,
        "no new grant needed"
    );
    let (status, body) = s.callback(&pending, false).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
