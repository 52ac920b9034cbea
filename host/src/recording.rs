//! What the host records of an event's traffic for operators: the inbound request's headers with
//! their secrets masked ([`mask_headers`]), and each attempt's outbound calls — the connector's
//! vendor calls through `outbound-http` and the ATS clients' calls — with the URL's secrets
//! masked ([`mask_url`]), the status or error and the timing ([`CallLog`]).
//!
//! A worker runs an attempt inside [`CallLog::scope`]; the calls made while it runs find the log
//! with [`CallLog::current`] (a Tokio task-local, so the ATS clients need no new parameter on
//! every call). The connector's calls run on the guest pool, another task: the sandbox context
//! takes the log when it is built, on the worker's task. Outside a scope (intake, admin reads)
//! nothing is recorded. Imports nothing of the host but the clock.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Calls kept per attempt; more are counted in [`CallLog::dropped`], not kept.
pub const CALLS_PER_ATTEMPT: usize = 50;

/// What an inbound header's or a query parameter's value is replaced with.
pub const MASK: &str = "***";

/// Who made an outbound call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallTarget {
    /// The connector, to its vendor (`outbound-http`).
    Vendor,
    /// The host's ATS client (Lever, Gem).
    Ats,
}

impl CallTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            CallTarget::Vendor => "vendor",
            CallTarget::Ats => "ats",
        }
    }

    pub fn parse(s: &str) -> CallTarget {
        if s == "ats" {
            CallTarget::Ats
        } else {
            CallTarget::Vendor
        }
    }
}

/// One outbound call as recorded: never a header or a body, only what an operator needs to see
/// what was asked and how it went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OutboundCall {
    pub target: CallTarget,
    pub method: String,
    /// The URL with secret query values and any user info masked.
    pub url: String,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// Why there was no answer (timeout, refused by policy, connection).
    pub error: Option<String>,
    /// Unix milliseconds.
    pub started_at_ms: i64,
    pub took_ms: i64,
}

impl OutboundCall {
    /// A call to `url` that started at `started_at_ms` and ended now.
    pub fn ended(
        target: CallTarget,
        method: &str,
        url: &str,
        started_at_ms: i64,
        outcome: Result<u16, String>,
    ) -> OutboundCall {
        OutboundCall::masked(target, method, mask_url(url), started_at_ms, outcome)
    }

    /// [`OutboundCall::ended`] of a URL the caller parsed already: not parsed again.
    pub fn ended_at(
        target: CallTarget,
        method: &str,
        url: &url::Url,
        started_at_ms: i64,
        outcome: Result<u16, String>,
    ) -> OutboundCall {
        OutboundCall::masked(target, method, mask_parsed(url), started_at_ms, outcome)
    }

    fn masked(
        target: CallTarget,
        method: &str,
        url: String,
        started_at_ms: i64,
        outcome: Result<u16, String>,
    ) -> OutboundCall {
        let (status, error) = match outcome {
            Ok(status) => (Some(status), None),
            Err(e) => (None, Some(clip(&e, 300))),
        };
        OutboundCall {
            target,
            method: method.to_string(),
            url,
            status,
            error,
            started_at_ms,
            took_ms: (crate::clock::now_ms() - started_at_ms).max(0),
        }
    }
}

#[derive(Default)]
struct Calls {
    kept: Vec<OutboundCall>,
    dropped: u32,
}

/// The calls of one attempt, bounded by [`CALLS_PER_ATTEMPT`]; cheap to clone (shared).
#[derive(Clone, Default)]
pub struct CallLog(Arc<Mutex<Calls>>);

tokio::task_local! {
    static CURRENT: CallLog;
}

impl CallLog {
    /// Runs `f` with this log as the task's current one.
    pub async fn scope<F: std::future::Future>(self, f: F) -> F::Output {
        CURRENT.scope(self, f).await
    }

    /// The log of the attempt running on this task, if any.
    pub fn current() -> Option<CallLog> {
        CURRENT.try_with(CallLog::clone).ok()
    }

    /// Records `call` in the current task's log (nothing outside an attempt).
    pub fn record_current(call: OutboundCall) {
        if let Some(log) = CallLog::current() {
            log.record(call);
        }
    }

    /// Keeps `call`, or counts it once the attempt holds [`CALLS_PER_ATTEMPT`].
    pub fn record(&self, call: OutboundCall) {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if calls.kept.len() < CALLS_PER_ATTEMPT {
            calls.kept.push(call);
        } else {
            calls.dropped = calls.dropped.saturating_add(1);
        }
    }

    /// The calls kept so far, oldest first, and how many were left out.
    pub fn take(&self) -> (Vec<OutboundCall>, u32) {
        let mut calls = self.0.lock().unwrap_or_else(|e| e.into_inner());
        (std::mem::take(&mut calls.kept), calls.dropped)
    }
}

/// What a name that may carry a secret contains, in any case.
const SECRET_PARTS: [&str; 12] = [
    "auth",
    "cookie",
    "signature",
    "secret",
    "token",
    "key",
    "password",
    "passwd",
    "sig",
    "session",
    "credential",
    "code",
];

/// The search for [`SECRET_PARTS`] in a name, built once.
static SECRET_SEARCH: std::sync::LazyLock<Option<aho_corasick::AhoCorasick>> =
    std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(SECRET_PARTS)
            .ok()
    });

/// Whether a header or query parameter named `name` may carry a secret (its value is masked,
/// its name kept). One automaton pass over the name, with no lowercased copy: this runs for
/// every header of every webhook (a window per part and position was 1.6 % of the HTTP
/// threads' samples under intake).
pub fn is_secret_name(name: &str) -> bool {
    match &*SECRET_SEARCH {
        Some(search) => search.is_match(name),
        // Twelve short literals always build; were it ever not so, mask rather than leak.
        None => true,
    }
}

/// Headers as received, in order, each secret-bearing value replaced by [`MASK`] (see
/// [`is_secret_name`]); a value that is not text is shown as `<binary>`. At most 100 headers,
/// each value clipped to 500 bytes.
pub fn mask_headers<'a>(
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
) -> Vec<(String, String)> {
    headers
        .into_iter()
        .take(MAX_HEADERS)
        .map(|(name, value)| {
            let (name, shown) = masked(name, value);
            (name.into_owned(), shown.into_owned())
        })
        .collect()
}

/// [`mask_headers`] written straight as the JSON an event keeps (`[["name","value"],…]`, what
/// the pairs serialize to), without building the pairs: one allocation per request instead
/// of several per header.
pub fn masked_headers_json<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> String {
    let mut out = Vec::with_capacity(512);
    out.push(b'[');
    for (n, (name, value)) in headers.into_iter().take(MAX_HEADERS).enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let (name, shown) = masked(name, value);
        // Two strings into a Vec: serde_json cannot fail here.
        let _ = serde_json::to_writer(&mut out, &(&*name, &*shown));
    }
    out.push(b']');
    // serde_json writes UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Headers kept per inbound request.
const MAX_HEADERS: usize = 100;

/// One header as kept: its name lowercased, its value masked, `<binary>` or clipped to 500
/// bytes; borrowed when nothing changes.
fn masked<'a>(name: &'a str, value: &'a [u8]) -> (Cow<'a, str>, Cow<'a, str>) {
    let shown = if is_secret_name(name) {
        Cow::Borrowed(MASK)
    } else {
        match std::str::from_utf8(value) {
            Ok(text) if text.len() <= 500 => Cow::Borrowed(text),
            Ok(text) => Cow::Owned(clip(text, 500)),
            Err(_) => Cow::Borrowed("<binary>"),
        }
    };
    let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    };
    (name, shown)
}

/// `url` with every query value whose name may carry a secret, and any user info, replaced by
/// [`MASK`]. Text that is not a URL is kept only up to its query string.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => mask_parsed(&parsed),
        Err(_) => clip(url.split('?').next().unwrap_or(""), 500),
    }
}

/// [`mask_url`] of a parsed URL (the ATS clients and the sandbox parsed it to send it): copied
/// and rewritten only when it has user info, a query or a fragment. A query is written again
/// even when nothing in it is secret, as [`mask_url`] always did.
pub fn mask_parsed(url: &url::Url) -> String {
    let plain = url.username().is_empty()
        && url.password().is_none()
        && url.query().is_none()
        && url.fragment().is_none();
    if plain {
        return clip(url.as_str(), 1000);
    }
    let mut parsed = url.clone();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username(MASK);
        let _ = parsed.set_password(None);
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_name(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.set_fragment(None);
    clip(parsed.as_str(), 1000)
}

/// At most `max` bytes of `text`, cut on a character boundary.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_query_values_and_user_info_are_masked_names_kept() {
        let shown =
            mask_url("https://u:pw@api.example/v1/x?api_key=s3cr3t&page=2&access_token=t#f");
        assert!(!shown.contains("s3cr3t") && !shown.contains("pw@") && !shown.contains("=t"));
        assert!(
            shown.contains("api_key=***") && shown.contains("page=2"),
            "{shown}"
        );
        assert!(shown.contains("access_token=***"), "{shown}");
        assert_eq!(mask_url("not a url?key=x"), "not a url");
    }

    /// A parsed URL is masked as its text is: the plain fast path and the rewritten ones.
    #[test]
    fn a_parsed_url_is_masked_like_its_text() {
        for text in [
            "https://api.example/v1/opportunities/abc",
            "http://127.0.0.1:8080/v1/x?expand=applications",
            "https://u:pw@api.example/v1/x?api_key=s3cr3t&page=2#f",
            "https://api.example/a%20b/?q=a+b&token=t",
            "https://api.example/x#frag",
            "HTTPS://API.Example:443/./y/../z",
        ] {
            let parsed = url::Url::parse(text).unwrap();
            assert_eq!(mask_parsed(&parsed), mask_url(text), "{text}");
        }
        let long = format!("https://api.example/{}", "p".repeat(2_000));
        assert_eq!(
            mask_parsed(&url::Url::parse(&long).unwrap()).len(),
            1000 + "…".len()
        );
    }

    /// The first-letter search finds a part wherever a search of every window does: at the
    /// start, inside, at the end, in any case, never past the name's end.
    #[test]
    fn a_secret_name_is_found_as_every_window_finds_it() {
        let contains = |name: &str| {
            let name = name.to_ascii_lowercase();
            SECRET_PARTS.iter().any(|p| name.contains(p))
        };
        for name in [
            "authorization",
            "X-Lever-Signature",
            "x-api-KEY",
            "set-cookie",
            "content-type",
            "host",
            "user-agent",
            "accept-encoding",
            "x-request-id",
            "ke",
            "s",
            "",
            "passw",
            "x-passwd",
            "SESSIONID",
            "x_code",
            "co",
            "credentia",
            "tok",
            "xtoken",
            "é-sig",
            "X-Password",
            "zzz~{|}",
            "@[`",
        ] {
            assert_eq!(is_secret_name(name), contains(name), "{name}");
        }
    }

    #[test]
    fn secret_headers_are_masked_and_others_kept() {
        let headers = [
            ("Authorization", b"Bearer abc".as_slice()),
            ("X-Lever-Signature", b"deadbeef".as_slice()),
            ("Cookie", b"sid=1".as_slice()),
            ("X-Api-Key", b"k".as_slice()),
            ("Content-Type", b"application/json".as_slice()),
        ];
        let shown = mask_headers(headers);
        let values: Vec<&str> = shown.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(values, [MASK, MASK, MASK, MASK, "application/json"]);
        assert_eq!(shown[1].0, "x-lever-signature");
        // The JSON kept with an event says the same as the pairs.
        assert_eq!(
            masked_headers_json(headers),
            serde_json::to_string(&shown).unwrap()
        );
        let long = "x".repeat(600);
        let escaped = [
            ("X-Note", "a \"quoted\" value".as_bytes()),
            ("x-long", long.as_bytes()),
        ];
        assert_eq!(
            masked_headers_json(escaped),
            serde_json::to_string(&mask_headers(escaped)).unwrap()
        );
    }

    #[tokio::test]
    async fn a_log_keeps_the_calls_made_in_its_scope_up_to_its_bound() {
        let log = CallLog::default();
        let call = OutboundCall::ended(CallTarget::Ats, "GET", "http://a/b", 0, Ok(200));
        log.clone()
            .scope(async {
                for _ in 0..CALLS_PER_ATTEMPT + 3 {
                    CallLog::record_current(call.clone());
                }
            })
            .await;
        // Outside the scope nothing is recorded.
        CallLog::record_current(call);
        let (kept, dropped) = log.take();
        assert_eq!((kept.len(), dropped), (CALLS_PER_ATTEMPT, 3));
    }
}
