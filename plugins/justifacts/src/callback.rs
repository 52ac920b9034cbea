//! Justifacts status callbacks: verification, parsing and mapping to switchyard statuses.
//!
//! Body (JSON, the protocol switchyard defines since Justifacts publishes none):
//!
//! ```json
//! {"event_id": "evt_…", "order_id": "JF-…", "reference": "<opportunity id>",
//!  "status": "Initiated" | "In Process" | "Complete" | "Cancelled",
//!  "result": "Clear" | "Review" | "Adverse" | null,
//!  "result_url": "https://…" | null, "occurred_at": 1700000000}
//! ```
//!
//! Only `order_id` and `status` are required.
//!
//! Signature (switchyard's scheme, implemented identically by the simulator in
//! `sim/src/justifacts.rs`): `X-Justifacts-Timestamp: <unix seconds>` and
//! `X-Justifacts-Signature: sha256=<lower-case hex>` (several comma-separated values while a
//! secret is rotated), the HMAC-SHA256 of `<timestamp as sent>.<raw body>` under the webhook
//! secret, the timestamp within 300 s of our clock. Verified through the host's `crypto` import.

use serde::Deserialize;
use switchyard_connector::signature::{self, DEFAULT_TOLERANCE_SECS};
use switchyard_connector::{
    Encoding, Host, Level, Note, ScreeningState as State, Status, StatusUpdate,
};

use crate::labels;

/// Header carrying the signing time (lower-case, as the host delivers header names).
pub const TIMESTAMP_HEADER: &str = "x-justifacts-timestamp";
/// Header carrying the signature(s).
pub const SIGNATURE_HEADER: &str = "x-justifacts-signature";

/// The vendor's order lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorStatus {
    /// The request was sent to the applicant.
    Initiated,
    /// The applicant completed the request; Justifacts is working.
    InProcess,
    /// Justifacts completed the order.
    Complete,
    /// The order was cancelled.
    Cancelled,
}

impl VendorStatus {
    /// Parses a status tolerantly: case, spaces, `_` and `-` are ignored (`In Process`,
    /// `IN_PROCESS`, `in-process`), and common spelling variants are accepted.
    pub fn parse(s: &str) -> Option<Self> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect();
        match norm.as_str() {
            "initiated" | "sent" | "invited" => Some(Self::Initiated),
            "inprocess" | "inprogress" | "processing" => Some(Self::InProcess),
            "complete" | "completed" => Some(Self::Complete),
            "cancelled" | "canceled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// The outcome of handling one callback request.
#[derive(Debug, Clone, PartialEq)]
pub struct Handled {
    /// HTTP status to answer the vendor with.
    pub http_status: u16,
    /// JSON body to answer with.
    pub body: String,
    /// The status update, when the callback was authentic and meaningful.
    pub update: Option<StatusUpdate>,
    /// A log line (never containing secrets or the raw body).
    pub log: Option<(Level, String)>,
}

impl Handled {
    fn reply(http_status: u16, body: &str, log: Option<(Level, String)>) -> Self {
        Handled {
            http_status,
            body: body.to_string(),
            update: None,
            log,
        }
    }
}

#[derive(Deserialize)]
struct Event {
    order_id: String,
    status: String,
    #[serde(default)]
    result: Option<String>,
    #[serde(default)]
    result_url: Option<String>,
}

/// Canonical casing for the documented verdicts; anything else passes through trimmed (bounded,
/// since it ends up in an ATS field).
fn verdict(result: Option<&str>) -> Option<String> {
    let r = result?.trim();
    if r.is_empty() {
        return None;
    }
    let canonical = match r.to_ascii_lowercase().as_str() {
        "clear" => "Clear".to_string(),
        "review" => "Review".to_string(),
        "adverse" => "Adverse".to_string(),
        _ => r.chars().take(64).collect(),
    };
    Some(canonical)
}

/// Only web links go into the result note: anything else (a `javascript:` URL, garbage) is
/// dropped rather than shown to recruiters as something to open.
fn web_url(url: Option<&str>) -> Option<String> {
    let u = url?.trim();
    let lower = u.to_ascii_lowercase();
    let is_web = lower.starts_with("https://") || lower.starts_with("http://");
    (is_web && !u.contains(char::is_whitespace)).then(|| u.to_string())
}

/// Maps a vendor status (plus result data) to the status the ATS should show.
///
/// The result URL goes into a secret note only, never into `report-url`: seed 004 writes it "in a
/// secret note", and a report URL would become a link every Lever user sees.
pub fn status_for(status: VendorStatus, result: Option<&str>, result_url: Option<&str>) -> Status {
    let plain = Status::new;
    match status {
        VendorStatus::Initiated => plain(State::Pending, labels::IN_PROGRESS_CANDIDATE),
        VendorStatus::InProcess => plain(State::Analyzing, labels::IN_PROGRESS_JUSTIFACTS),
        VendorStatus::Cancelled => plain(State::Cancelled, labels::CANCELLED),
        VendorStatus::Complete => {
            let verdict = verdict(result);
            let url = web_url(result_url);
            let mut text = String::from("Justifacts background check complete.");
            if let Some(v) = &verdict {
                text.push_str(&format!(" Result: {v}."));
            }
            if let Some(u) = &url {
                text.push_str(&format!(" Report: {u}"));
            }
            Status::new(State::Complete, labels::COMPLETE)
                .maybe_verdict(verdict)
                // Secret: the result of a background check is sensitive (Justifacts' own
                // integration posts it as a secret note).
                .note(Note::secret(text))
        }
    }
}

/// Handles one callback request. `header` looks up a lower-case header name; the signature is
/// checked through `host`'s `crypto` import against its clock.
pub fn handle<'a>(
    host: &impl Host,
    method: &str,
    header: impl Fn(&str) -> Option<&'a str>,
    body: &[u8],
    secret: &[u8],
) -> Handled {
    if !method.eq_ignore_ascii_case("POST") {
        return Handled::reply(405, r#"{"error":"method not allowed"}"#, None);
    }
    if let Err(e) = signature::verify_timestamped(
        host,
        secret,
        header(TIMESTAMP_HEADER).unwrap_or_default(),
        header(SIGNATURE_HEADER),
        body,
        Encoding::Hex,
        DEFAULT_TOLERANCE_SECS,
    ) {
        return Handled::reply(
            401,
            r#"{"error":"invalid signature"}"#,
            Some((
                Level::Warn,
                format!("rejected Justifacts callback: {}", e.as_str()),
            )),
        );
    }
    let event: Event = match serde_json::from_slice(body) {
        Ok(ev) => ev,
        Err(e) => {
            return Handled::reply(
                400,
                r#"{"error":"malformed body"}"#,
                Some((Level::Warn, format!("malformed Justifacts callback: {e}"))),
            )
        }
    };
    let order_ref = event.order_id.trim();
    if order_ref.is_empty() {
        return Handled::reply(
            400,
            r#"{"error":"missing order_id"}"#,
            Some((Level::Warn, "Justifacts callback without order_id".into())),
        );
    }
    let Some(status) = VendorStatus::parse(&event.status) else {
        // Authentic but from a newer lifecycle we do not know: acknowledge so Justifacts stops
        // retrying, change nothing, and tell the operator.
        let shown: String = event.status.chars().take(64).collect();
        return Handled::reply(
            200,
            r#"{"ok":true,"ignored":true}"#,
            Some((
                Level::Warn,
                format!("ignored Justifacts callback with unknown status {shown:?} for order {order_ref}"),
            )),
        );
    };
    let status = status_for(status, event.result.as_deref(), event.result_url.as_deref());
    Handled {
        http_status: 200,
        body: r#"{"ok":true}"#.to_string(),
        log: Some((
            Level::Info,
            format!("Justifacts order {order_ref} is now {}", status.label),
        )),
        update: Some(status.for_order(order_ref)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_connector::signature::signed_message;
    use switchyard_connector::testing::{hmac_sha256_hex, FakeHost};

    const SECRET: &[u8] = b"whsec_test";
    const NOW: i64 = 1_700_000_000;

    /// `sha256=<hex>`, as the simulator signs (its own implementation).
    fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hmac_sha256_hex(secret, &signed_message(ts, body))
        )
    }

    fn signed(body: &str, ts: i64) -> Vec<(String, String)> {
        vec![
            (TIMESTAMP_HEADER.to_string(), ts.to_string()),
            (
                SIGNATURE_HEADER.to_string(),
                sign(SECRET, &ts.to_string(), body.as_bytes()),
            ),
        ]
    }

    fn run(method: &str, headers: &[(String, String)], body: &str) -> Handled {
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let host = FakeHost::new().with_now(NOW);
        handle(&host, method, lookup, body.as_bytes(), SECRET)
    }

    #[test]
    fn status_names() {
        assert_eq!(
            VendorStatus::parse("Initiated"),
            Some(VendorStatus::Initiated)
        );
        assert_eq!(
            VendorStatus::parse("In Process"),
            Some(VendorStatus::InProcess)
        );
        assert_eq!(
            VendorStatus::parse("IN_PROCESS"),
            Some(VendorStatus::InProcess)
        );
        assert_eq!(
            VendorStatus::parse("complete"),
            Some(VendorStatus::Complete)
        );
        assert_eq!(
            VendorStatus::parse("Canceled"),
            Some(VendorStatus::Cancelled)
        );
        assert_eq!(VendorStatus::parse("On Hold"), None);
    }

    #[test]
    fn mapping() {
        let s = status_for(VendorStatus::Initiated, None, None);
        assert_eq!(
            (s.state, s.label.as_str()),
            (State::Pending, labels::IN_PROGRESS_CANDIDATE)
        );
        let s = status_for(VendorStatus::InProcess, None, None);
        assert_eq!(
            (s.state, s.label.as_str()),
            (State::Analyzing, labels::IN_PROGRESS_JUSTIFACTS)
        );
        let s = status_for(VendorStatus::Cancelled, None, None);
        assert_eq!(
            (s.state, s.label.as_str()),
            (State::Cancelled, labels::CANCELLED)
        );
        assert_eq!(s.note, None);
    }

    #[test]
    fn complete_with_result() {
        let s = status_for(
            VendorStatus::Complete,
            Some("clear"),
            Some("https://jweb.example/results/JF-1"),
        );
        assert_eq!(s.state, State::Complete);
        assert_eq!(s.label, labels::COMPLETE);
        assert_eq!(s.verdict.as_deref(), Some("Clear"));
        // The URL is in the secret note only: a report URL would be a public Lever link.
        assert_eq!(s.report_url, None);
        assert_eq!(
            s.note,
            Some(Note {
                text: "Justifacts background check complete. Result: Clear. Report: \
                       https://jweb.example/results/JF-1"
                    .into(),
                secret: true
            })
        );
    }

    #[test]
    fn complete_without_result() {
        let s = status_for(VendorStatus::Complete, None, Some("http://127.0.0.1:9/r/1"));
        assert_eq!(s.verdict, None);
        assert_eq!(
            s.note.map(|n| n.text).as_deref(),
            Some("Justifacts background check complete. Report: http://127.0.0.1:9/r/1")
        );
        let s = status_for(
            VendorStatus::Complete,
            Some(" "),
            Some("javascript:alert(1)"),
        );
        assert_eq!(s.verdict, None);
        assert_eq!(
            s.note.map(|n| n.text).as_deref(),
            Some("Justifacts background check complete.")
        );
    }

    #[test]
    fn good_callback() {
        let body = r#"{"event_id":"evt_1","order_id":"JF-1","reference":"opp","status":"Complete","result":"Adverse","result_url":"http://127.0.0.1:1/results/JF-1"}"#;
        let h = run("POST", &signed(body, NOW - 10), body);
        assert_eq!(h.http_status, 200);
        let update = h.update.unwrap_or_else(|| panic!("no update"));
        assert_eq!(update.order_ref, "JF-1");
        assert_eq!(update.status.verdict.as_deref(), Some("Adverse"));
    }

    #[test]
    fn bad_signatures_are_401_without_updates() {
        let body = r#"{"order_id":"JF-1","status":"Complete"}"#;
        // Missing headers.
        assert_eq!(run("POST", &[], body).http_status, 401);
        // Stale.
        let h = run("POST", &signed(body, NOW - 301), body);
        assert_eq!((h.http_status, h.update), (401, None));
        // Tampered body.
        let h = run(
            "POST",
            &signed(body, NOW),
            r#"{"order_id":"JF-2","status":"Complete"}"#,
        );
        assert_eq!((h.http_status, h.update), (401, None));
    }

    #[test]
    fn malformed_is_400() {
        for body in [
            "not json",
            r#"{"status":"Complete"}"#,
            r#"{"order_id":" ","status":"Complete"}"#,
        ] {
            let h = run("POST", &signed(body, NOW), body);
            assert_eq!((h.http_status, h.update), (400, None), "{body}");
        }
    }

    #[test]
    fn unknown_status_is_acknowledged_without_update() {
        let body = r#"{"order_id":"JF-1","status":"On Hold"}"#;
        let h = run("POST", &signed(body, NOW), body);
        assert_eq!((h.http_status, h.update), (200, None));
        assert!(matches!(h.log, Some((Level::Warn, _))));
    }

    #[test]
    fn wrong_method() {
        assert_eq!(run("GET", &[], "").http_status, 405);
    }
}
