//! Verification of Justifacts callback signatures.
//!
//! Justifacts publishes no webhook documentation, so switchyard defines the scheme (the simulator
//! in `sim/src/justifacts.rs` implements the same one):
//!
//! - `X-Justifacts-Timestamp: <unix seconds>` (decimal)
//! - `X-Justifacts-Signature: sha256=<lower-case hex>`; several comma-separated `sha256=` values
//!   are allowed so a secret can be rotated without dropping callbacks.
//! - signature = HMAC-SHA256(key = webhook secret, message = `<timestamp as sent> "." <raw body>`)
//!
//! Signing the timestamp together with the body lets us bound replays to [`TOLERANCE_SECS`].

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Header carrying the signing time (lower-case, as the host delivers header names).
pub const TIMESTAMP_HEADER: &str = "x-justifacts-timestamp";
/// Header carrying the signature(s).
pub const SIGNATURE_HEADER: &str = "x-justifacts-signature";
/// How far (in seconds, either direction) the timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;
/// The scheme prefix of each signature value.
const SCHEME: &str = "sha256=";

/// Why a callback's signature was refused. The vendor only ever hears "invalid signature"; the
/// variant is for our own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// The timestamp or signature header is absent.
    Missing,
    /// A header is present but unreadable.
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECS`] away from now.
    Stale,
    /// No signature value matches.
    Mismatch,
}

impl SignatureError {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature or timestamp header",
            SignatureError::Malformed => "malformed signature or timestamp header",
            SignatureError::Stale => "signature timestamp outside tolerance",
            SignatureError::Mismatch => "signature mismatch",
        }
    }
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; `new_from_slice` only errors for
    // fixed-key-size MACs.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC-SHA256 accepts any key length"),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Justifacts-Signature` value for `body` signed at `timestamp` (used by tests; the
/// simulator has its own copy so the two implementations check each other).
pub fn sign(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "{SCHEME}{}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Verifies a callback. `now` is the current unix time in seconds.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(SignatureError::Missing);
    };
    let timestamp = timestamp.trim();
    // Bounded length so the parse cannot overflow and absurd values are rejected early.
    if timestamp.is_empty()
        || timestamp.len() > 12
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(SignatureError::Malformed);
    }
    let ts: i64 = timestamp.parse().map_err(|_| SignatureError::Malformed)?;
    if (now - ts).abs() > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let mut candidates = Vec::new();
    // At most a handful of values matter; cap the work a hostile header can cause.
    for part in signature.split(',').take(8) {
        let part = part.trim();
        let Some(hex_value) = part.strip_prefix(SCHEME) else {
            continue;
        };
        match hex::decode(hex_value) {
            Ok(bytes) => candidates.push(bytes),
            Err(_) => return Err(SignatureError::Malformed),
        }
    }
    if candidates.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = mac(secret, timestamp, body);
    for candidate in candidates {
        // `verify_slice` compares in constant time.
        if expected.clone().verify_slice(&candidate).is_ok() {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"order_id":"JF-1","status":"Complete"}"#;

    #[test]
    fn known_vector() {
        // Independent check: `printf '1700000000.{"order_id":"JF-1","status":"Complete"}' |
        // openssl dgst -sha256 -hmac whsec_test`.
        let sig = sign(SECRET, "1700000000", BODY);
        assert_eq!(
            sig,
            "sha256=2f643ca0767112655e5a0c8669d2533bd40e7680a464c2ce3a9e0a50bec36b9a"
        );
    }

    #[test]
    fn round_trip() {
        let sig = sign(SECRET, "1700000000", BODY);
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some(&sig), BODY, 1_700_000_100),
            Ok(())
        );
    }

    #[test]
    fn rotation_list() {
        let good = sign(SECRET, "1700000000", BODY);
        let old = sign(b"old", "1700000000", BODY);
        let header = format!("{old}, {good}");
        assert_eq!(
            verify(
                SECRET,
                Some("1700000000"),
                Some(&header),
                BODY,
                1_700_000_000
            ),
            Ok(())
        );
    }

    #[test]
    fn failures() {
        let sig = sign(SECRET, "1700000000", BODY);
        let now = 1_700_000_000;
        assert_eq!(
            verify(SECRET, None, Some(&sig), BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), None, BODY, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, Some("soon"), Some(&sig), BODY, now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some("md5=abc"), BODY, now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some("sha256=zz"), BODY, now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some(&sig), BODY, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some(&sig), BODY, now - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"other", Some("1700000000"), Some(&sig), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some("1700000000"), Some(&sig), b"{}", now),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it invalidates the signature.
        assert_eq!(
            verify(SECRET, Some("1700000001"), Some(&sig), BODY, now),
            Err(SignatureError::Mismatch)
        );
    }
}
