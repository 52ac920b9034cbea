//! The reply to a vendor callback, built by the host from what the connector chose: its status
//! (200–599, else 500), a bounded set of safe headers (`content-type`, `cache-control` and `x-*`;
//! everything else — framing, hop-by-hop, cookies — is dropped) and a bounded body (an oversized
//! body is replaced by an empty one). `content-length` is the host's own.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;

use crate::config::limits::SandboxLimits;
use crate::wasm::connector::RawHttp;

/// Longest header name kept.
const NAME_BYTES: usize = 64;

/// A reply and the limits that bit while building it (`runtime.limits` setting names).
pub struct Reply {
    pub response: Response,
    pub limited: Vec<&'static str>,
}

/// Whether a connector may set header `name` (lower-case) on our reply.
fn safe(name: &str) -> bool {
    matches!(name, "content-type" | "cache-control")
        || (name.starts_with("x-") && name.len() <= NAME_BYTES)
}

/// Builds the reply from the connector's response.
pub fn build(from: RawHttp, limits: &SandboxLimits) -> Reply {
    let mut limited = Vec::new();
    let status = match StatusCode::from_u16(from.status) {
        Ok(s) if (200..600).contains(&s.as_u16()) => s,
        _ => {
            limited.push("reply_status");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let body = if from.body.len() > limits.reply_body_bytes {
        limited.push("reply_body_bytes");
        Vec::new()
    } else {
        from.body
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut dropped = false;
    // `content-type` and `cache-control` first (one each), then `x-*` up to the cap, so a flood
    // of `x-*` headers cannot push out the content type.
    let (special, rest): (Vec<_>, Vec<_>) = from
        .headers
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v))
        .partition(|(n, _)| matches!(n.as_str(), "content-type" | "cache-control"));
    for (name, value) in special.into_iter().chain(rest) {
        let unique = matches!(name.as_str(), "content-type" | "cache-control");
        if !safe(&name)
            || value.len() > limits.reply_header_bytes
            || (!unique && headers.len() >= limits.reply_headers)
        {
            dropped = true;
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(n), Ok(v)) if unique => {
                if headers.insert(n, v).is_some() {
                    dropped = true;
                }
            }
            (Ok(n), Ok(v)) => {
                headers.append(n, v);
            }
            _ => dropped = true,
        }
    }
    if dropped {
        limited.push("reply_headers");
    }
    Reply { response, limited }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> RawHttp {
        RawHttp {
            status,
            headers,
            body,
            ..RawHttp::default()
        }
    }

    #[test]
    fn only_safe_headers_and_a_bounded_body_reach_the_vendor() {
        let limits = SandboxLimits::default();
        let mut headers: Vec<(String, String)> = (0..40_000)
            .map(|i| (format!("x-flood-{i}"), "y".into()))
            .collect();
        headers.insert(0, ("Content-Length".into(), "999".into()));
        headers.insert(1, ("transfer-encoding".into(), "chunked".into()));
        headers.insert(2, ("connection".into(), "close".into()));
        headers.insert(3, ("set-cookie".into(), "a=b".into()));
        headers.insert(4, ("content-type".into(), "text/plain".into()));
        headers.insert(5, ("x-bad".into(), "new\nline".into()));
        let reply = build(raw(202, headers, b"ok".to_vec()), &limits);
        let h = reply.response.headers();
        assert_eq!(reply.response.status(), 202);
        assert_eq!(h.len(), limits.reply_headers);
        assert_eq!(h["content-type"], "text/plain");
        for framing in [
            "content-length",
            "transfer-encoding",
            "connection",
            "set-cookie",
            "x-bad",
        ] {
            assert!(!h.contains_key(framing), "{framing}");
        }
        assert_eq!(reply.limited, vec!["reply_headers"]);

        let big = build(raw(200, Vec::new(), vec![0; 1 << 20]), &limits);
        assert_eq!(big.limited, vec!["reply_body_bytes"]);
        let odd = build(raw(42, Vec::new(), Vec::new()), &limits);
        assert_eq!(odd.response.status(), 500);
    }
}
