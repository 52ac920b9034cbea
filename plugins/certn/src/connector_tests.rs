//! The connector's operations against `FakeHost`: which Certn calls each situation makes, what
//! it returns and what state it leaves.

use super::*;
use serde_json::json;
use switchyard_connector::testing::{screening_request, stripe_signature, FakeHost, DEFAULT_NOW};
use switchyard_connector::HttpError;

const BASE: &str = "http://127.0.0.1:9000";
const INVITE: &str = "http://127.0.0.1:9000/api/v1/hr/applications/invite/";
const LOOKUP: &str = "http://127.0.0.1:9000/api/v1/hr/applications/?reference=lever%3Atok-1";
const KEY: &str = "lever:tok-1";
const SECRET: &str = "whsec_1";

fn host() -> FakeHost {
    FakeHost::new()
        .with_config("api-base", BASE)
        .with_secret("api-key", "key_1")
        .with_secret("webhook-secret", SECRET)
        .with_package("Basic", true, &[("checks", "criminal_record_check")])
        .with_package(
            "Enhanced",
            false,
            &[("checks", "criminal_record_check,employment_verification")],
        )
}

fn request(emails: &[&str], tags: &[&str]) -> ScreeningRequest {
    ScreeningRequest {
        opportunity_tags: tags.iter().map(|t| t.to_string()).collect(),
        ..screening_request(KEY, "Ada Lovelace", emails)
    }
}

fn ada() -> ScreeningRequest {
    request(&["ada@example.com"], &[])
}

fn lookup_answer(apps: serde_json::Value) -> String {
    json!({"count": 1, "next": null, "previous": null, "results": apps}).to_string()
}

fn intent_left_behind(host: FakeHost) -> FakeHost {
    host.with_state(&idempotency::intent_key(KEY), "1699999000")
}

#[test]
fn the_manifest_asks_for_default_limits_and_has_no_verdict_labels() {
    let m = manifest();
    assert_eq!(m.id, "certn");
    assert_eq!((m.limits.memory_mib, m.limits.instances), (0, 0));
    assert!(m.verdict_labels.is_empty());
    assert_eq!(m.status_labels, STATUS_LABELS.map(String::from).to_vec());
}

#[test]
fn invites_once_with_our_reference_and_records_the_order() {
    let host = host();
    host.respond("POST", INVITE, 201, r#"{"id":"a1","status":"PENDING"}"#);
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("a1"));
    assert_eq!(started.status.label, LABEL_PENDING);
    let sent = &host.requests()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["reference"], KEY);
    assert_eq!(body["package"], "Basic");
    assert_eq!(body["request_criminal_record_check"], true);
    assert_eq!(header(&sent.headers, "idempotency-key"), Some(KEY));
    assert_eq!(header(&sent.headers, "authorization"), Some("Bearer key_1"));
    assert_eq!(
        host.state(&idempotency::order_key(KEY)).as_deref(),
        Some("a1")
    );
    assert_eq!(host.state(&idempotency::intent_key(KEY)), None);

    // A retry is answered from state.
    let again = start_screening(&host, &ada()).unwrap();
    assert_eq!(again.order_ref.as_deref(), Some("a1"));
    assert_eq!(host.requests().len(), 1);
}

#[test]
fn an_intent_and_an_application_at_certn_means_no_second_invitation() {
    let host = intent_left_behind(host());
    host.respond(
        "GET",
        LOOKUP,
        200,
        &lookup_answer(json!([{"id": "a1", "status": "ANALYZING", "reference": KEY}])),
    );
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("a1"));
    assert_eq!(started.status.label, "CERTN - Analyzing");
    assert_eq!(started.status.state, ScreeningState::Analyzing);
    assert_eq!(host.count("POST", INVITE), 0);
    assert_eq!(
        host.state(&idempotency::order_key(KEY)).as_deref(),
        Some("a1")
    );
    assert_eq!(host.state(&idempotency::intent_key(KEY)), None);
}

#[test]
fn an_intent_and_nothing_at_certn_invites_once() {
    let host = intent_left_behind(host());
    host.respond("GET", LOOKUP, 200, &lookup_answer(json!([])));
    host.respond("POST", INVITE, 201, r#"{"id":"a2"}"#);
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("a2"));
    assert_eq!(
        (host.count("GET", LOOKUP), host.count("POST", INVITE)),
        (1, 1)
    );
}

#[test]
fn a_lost_answer_then_a_retry_finds_the_application_by_reference() {
    let host = host();
    host.fail("POST", INVITE, HttpError::Timeout);
    let lost = start_screening(&host, &ada()).unwrap_err();
    assert_eq!(lost.kind(), "transient");
    assert!(idempotency::has_intent(&host, KEY));

    host.respond(
        "GET",
        LOOKUP,
        200,
        &lookup_answer(json!([{"id": "a1", "status": "PENDING", "reference": KEY}])),
    );
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("a1"));
    assert_eq!(started.status.label, LABEL_PENDING);
    assert_eq!(host.count("POST", INVITE), 1, "invited once in all");
}

#[test]
fn certn_unavailable_leaves_no_intent_so_the_retry_invites_directly() {
    let host = host();
    host.respond(
        "POST",
        INVITE,
        503,
        r#"{"detail":"Service temporarily unavailable"}"#,
    );
    let down = start_screening(&host, &ada()).unwrap_err();
    assert!(down.message().contains("503"), "{down:?}");
    assert_eq!(down.kind(), "transient");
    assert!(!idempotency::has_intent(&host, KEY));
    host.respond("POST", INVITE, 201, r#"{"id":"a1"}"#);
    assert!(start_screening(&host, &ada()).is_ok());
    assert_eq!(
        (host.count("GET", LOOKUP), host.count("POST", INVITE)),
        (0, 2)
    );
}

#[test]
fn a_failed_lookup_invites_nobody_and_is_retried() {
    let host = intent_left_behind(host());
    host.respond("GET", LOOKUP, 503, r#"{"detail":"down"}"#);
    let e = start_screening(&host, &ada()).unwrap_err();
    assert_eq!(e.kind(), "transient");
    assert!(e.message().contains("503"), "{e:?}");
    assert_eq!(host.count("POST", INVITE), 0);
    assert!(idempotency::has_intent(&host, KEY));
}

#[test]
fn errors_are_classified_and_never_quote_the_key() {
    let host = host();
    host.respond("POST", INVITE, 401, r#"{"detail":"Invalid token key_1."}"#);
    assert_eq!(
        start_screening(&host, &ada()),
        Err(ConnectorError::Config("Certn rejected the API key".into()))
    );
    host.respond(
        "POST",
        INVITE,
        400,
        r#"{"email":["Enter a valid email address."]}"#,
    );
    assert_eq!(
        start_screening(&host, &ada()),
        Err(ConnectorError::Rejected(
            "Certn refused the invite (400): email: Enter a valid email address.".into()
        ))
    );
    let host = FakeHost::new().with_package("Basic", true, &[]);
    assert_eq!(start_screening(&host, &ada()).unwrap_err().kind(), "config");
    assert!(host.requests().is_empty());
}

#[test]
fn no_email_is_an_error_status_without_a_call() {
    let host = host();
    let started = start_screening(&host, &request(&[" "], &[])).unwrap();
    assert_eq!(started.order_ref, None);
    assert_eq!(
        (started.status.state, started.status.label.as_str()),
        (ScreeningState::Error, LABEL_NO_EMAIL)
    );
    assert!(host.requests().is_empty());
}

#[test]
fn a_tag_naming_another_package_overrides_the_default() {
    let host = host();
    host.respond("POST", INVITE, 201, r#"{"id":"a1"}"#);
    start_screening(&host, &request(&["ada@example.com"], &[" enhanced "])).unwrap();
    let body: Value = serde_json::from_slice(&host.requests()[0].body).unwrap();
    assert_eq!(body["package"], "Enhanced");
    assert_eq!(body["request_employment_verification"], true);
}

#[test]
fn a_package_without_a_service_is_refused_before_any_invitation() {
    let host = host().with_package("Empty", false, &[]);
    let listed = list_packages(&host);
    assert!(
        matches!(&listed, Err(ConnectorError::Config(m)) if m.contains("\"Empty\" has no service")),
        "{listed:?}"
    );
    let started = start_screening(&host, &request(&["ada@example.com"], &["Empty"]));
    assert!(
        matches!(&started, Err(ConnectorError::Config(m)) if m.contains("\"Empty\"")),
        "{started:?}"
    );
    assert!(host.requests().is_empty(), "Certn was never called");
}

fn callback(body: &str, signature: Option<String>) -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: signature
            .map(|s| vec![("certn-signature".to_string(), s)])
            .unwrap_or_default(),
        body: body.as_bytes().to_vec(),
    }
}

fn signed(body: &str) -> HttpRequest {
    callback(
        body,
        Some(stripe_signature(
            SECRET.as_bytes(),
            DEFAULT_NOW,
            body.as_bytes(),
        )),
    )
}

#[test]
fn a_signed_webhook_becomes_an_update_with_link_and_result() {
    let body = r#"{"id":"a1","status":"COMPLETE","report_url":"http://127.0.0.1:9000/reports/a1.pdf","result":"CLEAR"}"#;
    let r = handle_callback(&host(), &signed(body)).unwrap();
    assert_eq!(r.response.status, 200);
    assert_eq!(r.updates.len(), 1);
    let u = &r.updates[0];
    assert_eq!(u.order_ref, "a1");
    assert_eq!(u.status.label, "CERTN - Complete");
    assert_eq!(
        u.status.report_url.as_deref(),
        Some("http://127.0.0.1:9000/reports/a1.pdf")
    );
    assert_eq!(u.status.verdict.as_deref(), Some("CLEAR"));
}

#[test]
fn bad_signatures_are_401_malformed_400_unknown_200_all_without_updates() {
    let host = host();
    let body = r#"{"id":"a1","status":"COMPLETE"}"#;
    let stale = stripe_signature(SECRET.as_bytes(), DEFAULT_NOW - 301, body.as_bytes());
    let other = stripe_signature(b"other", DEFAULT_NOW, body.as_bytes());
    for bad in [
        callback(body, None),
        callback(body, Some(stale)),
        callback(body, Some(other)),
    ] {
        let r = handle_callback(&host, &bad).unwrap();
        assert_eq!((r.response.status, r.updates.len()), (401, 0));
    }
    let r = handle_callback(&host, &signed(r#"{"status":"COMPLETE"}"#)).unwrap();
    assert_eq!((r.response.status, r.updates.len()), (400, 0));
    let r = handle_callback(&host, &signed(r#"{"id":"a1","status":"RETURNED"}"#)).unwrap();
    assert_eq!((r.response.status, r.updates.len()), (200, 0));
    assert!(host
        .logs()
        .iter()
        .any(|l| l.message == "rejected Certn callback"));
}

#[test]
fn endpoint_verification_and_other_methods() {
    let host = host();
    let get = |query: &str, method: &str| HttpRequest {
        method: method.into(),
        path: "/".into(),
        query: query.into(),
        headers: vec![],
        body: vec![],
    };
    let r = handle_callback(&host, &get("challenge=abc%20d", "GET")).unwrap();
    assert_eq!(
        (r.response.status, r.response.body.as_slice()),
        (200, &b"abc d"[..])
    );
    assert_eq!(r.response.header("content-type"), Some("text/plain"));
    assert_eq!(
        handle_callback(&host, &get("", "GET"))
            .unwrap()
            .response
            .status,
        400
    );
    assert_eq!(
        handle_callback(&host, &get("", "PUT"))
            .unwrap()
            .response
            .status,
        405
    );
    let no_secret = FakeHost::new();
    assert_eq!(
        handle_callback(&no_secret, &signed("{}"))
            .unwrap_err()
            .kind(),
        "config"
    );
}
