//! Verifying vendor callback signatures (HMAC-SHA256) through the host's `crypto` import: no
//! crypto code in the component, constant-time comparison, replay bounds from a signed
//! timestamp.
//!
//! Three common schemes, each one call:
//!
//! - [`verify_stripe_style`]: one header `t=<unix seconds>,v1=<hex>[,v1=<hex>...]`, signature
//!   over `<t>.<raw body>` (Stripe, Certn);
//! - [`verify_timestamped`]: a timestamp header and a signature header, signature over
//!   `<timestamp>.<raw body>` (Justifacts: `X-Justifacts-Timestamp`, `X-Justifacts-Signature:
//!   sha256=<hex>`);
//! - [`verify_body`]: a signature of the raw body alone, hex or base64 (GitHub's
//!   `X-Hub-Signature-256: sha256=<hex>`, Shopify's base64).
//!
//! A signature value may carry a `sha256=` prefix; a header may list several comma-separated
//! values (a vendor rotating its secret signs with both), any one matching is enough, and values
//! that do not decode are skipped. At most [`MAX_SIGNATURES`] values are considered, so a hostile
//! header cannot make the call expensive. On any failure answer 401 with no updates, and log
//! [`SignatureError::as_str`] (it never contains the secret or the signature).

use std::fmt;

use crate::{Encoding, Host};

/// How far, in seconds and in either direction, a signed timestamp may be from the host's clock.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// The most signature values one header may contribute.
pub const MAX_SIGNATURES: usize = 8;

/// Longest accepted timestamp, in digits (bounds the parse; 12 digits is year 33658).
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// Why a signature was refused. The vendor should only ever hear "invalid signature"; the
/// variant is for the connector's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature (or its timestamp) is absent.
    Missing,
    /// A signature or timestamp is present but unreadable.
    Malformed,
    /// The timestamp is further from now than the tolerance.
    Stale,
    /// No signature value matches.
    Mismatch,
}

impl SignatureError {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature or timestamp",
            SignatureError::Malformed => "malformed signature or timestamp",
            SignatureError::Stale => "signature timestamp outside tolerance",
            SignatureError::Mismatch => "signature mismatch",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for SignatureError {}

/// Checks a Stripe-style header `t=<unix seconds>,v1=<hex>[,v1=<hex>...]` (`header` is its
/// value, if the request had one): HMAC-SHA256 with `secret` over `<t as sent>.<body>`, `t`
/// within `tolerance_secs` of the host's clock.
pub fn verify_stripe_style(
    host: &impl Host,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',').take(2 * MAX_SIGNATURES) {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = Some(value.trim()),
            "v1" if signatures.len() < MAX_SIGNATURES => {
                signatures.extend(host.decode(value.trim(), Encoding::Hex));
            }
            _ => {}
        }
    }
    let timestamp = timestamp
        .filter(|t| !t.is_empty() && !signatures.is_empty())
        .ok_or(SignatureError::Malformed)?;
    check_timestamp(host, timestamp, tolerance_secs)?;
    matches_any(host, secret, &signed_message(timestamp, body), &signatures)
}

/// Checks a signature sent apart from its timestamp: `timestamp` is the timestamp header's value
/// (unix seconds; empty when absent), `signatures` the signature header's (one or more
/// comma-separated values in `encoding`, each optionally `sha256=`-prefixed). The signature is
/// HMAC-SHA256 with `secret` over `<timestamp as sent>.<body>`.
pub fn verify_timestamped(
    host: &impl Host,
    secret: &[u8],
    timestamp: &str,
    signatures: Option<&str>,
    body: &[u8],
    encoding: Encoding,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let timestamp = timestamp.trim();
    let signatures = signatures.ok_or(SignatureError::Missing)?;
    if timestamp.is_empty() {
        return Err(SignatureError::Missing);
    }
    check_timestamp(host, timestamp, tolerance_secs)?;
    let candidates = decode_list(host, signatures, encoding);
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    matches_any(host, secret, &signed_message(timestamp, body), &candidates)
}

/// Checks a signature of the raw body alone (no timestamp, so no replay bound): `signatures` is
/// the header's value, one or more comma-separated values in `encoding`, each optionally
/// `sha256=`-prefixed.
pub fn verify_body(
    host: &impl Host,
    secret: &[u8],
    signatures: Option<&str>,
    body: &[u8],
    encoding: Encoding,
) -> Result<(), SignatureError> {
    let candidates = decode_list(host, signatures.ok_or(SignatureError::Missing)?, encoding);
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    matches_any(host, secret, body, &candidates)
}

/// `<timestamp>.<body>`, the message Stripe-style schemes sign.
pub fn signed_message(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(timestamp.len() + 1 + body.len());
    message.extend_from_slice(timestamp.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    message
}

/// A timestamp must be 1 to 12 ASCII digits and within `tolerance_secs` of the host's clock.
fn check_timestamp(
    host: &impl Host,
    timestamp: &str,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    if timestamp.len() > MAX_TIMESTAMP_DIGITS || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::Malformed);
    }
    let at: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if host.now().abs_diff(at) > tolerance_secs.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

/// The decodable values of a comma-separated list, `sha256=` prefixes removed.
fn decode_list(host: &impl Host, list: &str, encoding: Encoding) -> Vec<Vec<u8>> {
    list.split(',')
        .take(MAX_SIGNATURES)
        .map(str::trim)
        .map(|v| match v.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sha256=") => &v[7..],
            _ => v,
        })
        .filter(|v| !v.is_empty())
        .filter_map(|v| host.decode(v, encoding))
        .collect()
}

/// Whether any candidate equals HMAC-SHA256(`secret`, `message`), compared in constant time.
fn matches_any(
    host: &impl Host,
    secret: &[u8],
    message: &[u8],
    candidates: &[Vec<u8>],
) -> Result<(), SignatureError> {
    let expected = host.hmac_sha256(secret, message);
    if candidates
        .iter()
        .any(|c| host.constant_time_eq(&expected, c))
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
#[path = "signature_tests.rs"]
mod tests;
