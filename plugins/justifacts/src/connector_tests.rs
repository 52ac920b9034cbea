//! The connector's operations against `FakeHost`: which Justifacts calls each situation makes,
//! what it returns and what state it leaves.

use super::*;
use serde_json::json;
use switchyard_connector::signature::signed_message;
use switchyard_connector::testing::{hmac_sha256_hex, screening_request, FakeHost, DEFAULT_NOW};
use switchyard_connector::HttpError;

const BASE: &str = "http://127.0.0.1:9100";
const ORDERS: &str = "http://127.0.0.1:9100/v1/orders";
const LOOKUP: &str = "http://127.0.0.1:9100/v1/orders?client_order_ref=lever%3Atok-1";
const KEY: &str = "lever:tok-1";
const TAG: &str = "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]";
const SECRET: &str = "whsec_jf";

fn host() -> FakeHost {
    FakeHost::new()
        .with_config("api-base", BASE)
        .with_config("client-code", " JW-1 ")
        .with_secret("api-key", "jf_key")
        .with_secret("webhook-secret", SECRET)
        .with_callback_url("http://127.0.0.1:8080/hooks/jf/vendor")
}

fn request(emails: &[&str], posting_tags: &[&str]) -> ScreeningRequest {
    let mut request = screening_request(KEY, " Ada Lovelace ", emails);
    request.candidate.phones = vec![" ".into(), "+15550100".into()];
    request.posting_tags = posting_tags.iter().map(|t| t.to_string()).collect();
    request
}

fn ada() -> ScreeningRequest {
    request(&["ada@example.com"], &[TAG])
}

fn order_json(id: &str, status: &str) -> serde_json::Value {
    json!({"order_id": id, "status": status, "client_code": "JW-1", "package_code": "13558",
           "reference": "opp-1", "client_order_ref": KEY, "result": null, "result_url": null})
}

fn intent_left_behind(host: FakeHost) -> FakeHost {
    host.with_state(&idempotency::intent_key(KEY), "1699999000")
}

#[test]
fn the_manifest_asks_for_default_limits_and_has_no_verdict_labels() {
    let m = manifest();
    assert_eq!(m.id, "justifacts");
    assert_eq!((m.limits.memory_mib, m.limits.instances), (0, 0));
    assert!(m.verdict_labels.is_empty());
    assert_eq!(m.default_trigger_stage.as_deref(), Some("Background Check"));
    assert_eq!(m.status_labels, labels::ALL.map(String::from).to_vec());
}

#[test]
fn orders_once_with_our_client_order_ref_and_records_the_order() {
    let host = host();
    host.respond(
        "POST",
        ORDERS,
        201,
        &order_json("JF-1", "Initiated").to_string(),
    );
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("JF-1"));
    assert_eq!(started.status.label, labels::IN_PROGRESS_CANDIDATE);
    let sent = &host.requests()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body["client_order_ref"], KEY);
    assert_eq!(body["reference"], "opp-1");
    assert_eq!(body["client_code"], "JW-1");
    assert_eq!(body["package_code"], "13558");
    assert_eq!(
        body["callback_url"],
        "http://127.0.0.1:8080/hooks/jf/vendor"
    );
    assert_eq!(
        body["applicant"],
        json!({"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+15550100"})
    );
    assert_eq!(header(&sent.headers, "idempotency-key"), Some(KEY));
    assert_eq!(
        header(&sent.headers, "authorization"),
        Some("Bearer jf_key")
    );
    assert_eq!(
        host.state(&idempotency::order_key(KEY)).as_deref(),
        Some("JF-1")
    );
    assert_eq!(host.state(&idempotency::intent_key(KEY)), None);

    let again = start_screening(&host, &ada()).unwrap();
    assert_eq!(again.order_ref.as_deref(), Some("JF-1"));
    assert_eq!(host.requests().len(), 1, "a retry sends nothing");
}

#[test]
fn an_intent_and_an_order_at_justifacts_means_no_second_order() {
    let host = intent_left_behind(host());
    let answer = json!({"orders": [order_json("JF-1", "In Process")]});
    host.respond("GET", LOOKUP, 200, &answer.to_string());
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("JF-1"));
    assert_eq!(started.status.label, labels::IN_PROGRESS_JUSTIFACTS);
    assert_eq!(host.count("POST", ORDERS), 0);
    assert_eq!(
        host.state(&idempotency::order_key(KEY)).as_deref(),
        Some("JF-1")
    );
}

#[test]
fn an_intent_and_nothing_at_justifacts_orders_once() {
    let host = intent_left_behind(host());
    host.respond("GET", LOOKUP, 200, r#"{"orders":[]}"#);
    host.respond(
        "POST",
        ORDERS,
        201,
        &order_json("JF-2", "Initiated").to_string(),
    );
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("JF-2"));
    assert_eq!(
        (host.count("GET", LOOKUP), host.count("POST", ORDERS)),
        (1, 1)
    );
}

#[test]
fn a_lost_answer_then_a_retry_finds_the_order_by_client_order_ref() {
    let host = host();
    host.fail("POST", ORDERS, HttpError::Timeout);
    assert_eq!(
        start_screening(&host, &ada()).unwrap_err().kind(),
        "transient"
    );
    assert!(idempotency::has_intent(&host, KEY));

    let answer = json!({"orders": [order_json("JF-1", "Initiated")]});
    host.respond("GET", LOOKUP, 200, &answer.to_string());
    let started = start_screening(&host, &ada()).unwrap();
    assert_eq!(started.order_ref.as_deref(), Some("JF-1"));
    assert_eq!(started.status.label, labels::IN_PROGRESS_CANDIDATE);
    assert_eq!(host.count("POST", ORDERS), 1, "ordered once in all");
}

#[test]
fn refusals_are_error_statuses_with_a_note_and_no_call() {
    let host = host();
    let no_tag = start_screening(&host, &request(&["ada@example.com"], &[])).unwrap();
    assert_eq!(no_tag.order_ref, None);
    assert_eq!(no_tag.status.state, ScreeningState::Error);
    assert_eq!(no_tag.status.label, labels::ERROR_NO_PACKAGE_TAG);
    assert!(no_tag.status.note.is_some_and(|n| !n.secret));
    let no_email = start_screening(&host, &request(&[], &[TAG])).unwrap();
    assert_eq!(no_email.status.label, labels::ERROR_NO_EMAIL);
    assert!(host.requests().is_empty());
}

#[test]
fn missing_configuration_is_a_config_error() {
    let host = FakeHost::new().with_secret("api-key", "k");
    assert_eq!(
        start_screening(&host, &ada()),
        Err(ConnectorError::Config(
            "missing setting `client-code`".into()
        ))
    );
}

#[test]
fn vendor_errors_are_classified() {
    let host = host();
    host.respond(
        "POST",
        ORDERS,
        400,
        r#"{"error":"applicant.email is required"}"#,
    );
    assert_eq!(
        start_screening(&host, &ada()),
        Err(ConnectorError::Rejected(
            "Justifacts rejected the order (400): applicant.email is required".into()
        ))
    );
    host.respond("POST", ORDERS, 503, r#"{"error":"service unavailable"}"#);
    assert_eq!(
        start_screening(&host, &ada()).unwrap_err().kind(),
        "transient"
    );
    assert!(
        !idempotency::has_intent(&host, KEY),
        "503: nothing was ordered"
    );
}

fn callback(body: &str, secret: &str, at: i64) -> HttpRequest {
    let sig = hmac_sha256_hex(
        secret.as_bytes(),
        &signed_message(&at.to_string(), body.as_bytes()),
    );
    HttpRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![
            ("x-justifacts-timestamp".into(), at.to_string()),
            ("x-justifacts-signature".into(), format!("sha256={sig}")),
        ],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn a_signed_completion_becomes_an_update_with_a_secret_note() {
    let body = r#"{"order_id":"JF-1","status":"Complete","result":"clear","result_url":"http://127.0.0.1:9100/results/JF-1"}"#;
    let r = handle_callback(&host(), &callback(body, SECRET, DEFAULT_NOW)).unwrap();
    assert_eq!(r.response.status, 200);
    let u = &r.updates[0];
    assert_eq!(
        (u.order_ref.as_str(), u.status.label.as_str()),
        ("JF-1", labels::COMPLETE)
    );
    assert_eq!(u.status.verdict.as_deref(), Some("Clear"));
    let note = u.status.note.clone().unwrap();
    assert!(note.secret);
    assert!(note.text.contains("http://127.0.0.1:9100/results/JF-1"));
}

#[test]
fn badly_signed_callbacks_are_refused_and_logged() {
    let host = host();
    let body = r#"{"order_id":"JF-1","status":"Complete"}"#;
    for bad in [
        callback(body, "other", DEFAULT_NOW),
        callback(body, SECRET, DEFAULT_NOW - 301),
    ] {
        let r = handle_callback(&host, &bad).unwrap();
        assert_eq!((r.response.status, r.updates.len()), (401, 0));
    }
    assert!(host
        .logs()
        .iter()
        .all(|l| l.level == Level::Warn && l.message.starts_with("rejected Justifacts callback")));
    let no_secret = FakeHost::new();
    assert_eq!(
        handle_callback(&no_secret, &callback(body, SECRET, DEFAULT_NOW))
            .unwrap_err()
            .kind(),
        "config"
    );
}
