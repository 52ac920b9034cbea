//! Verification of Certn's `Certn-Signature` webhook header.
//!
//! The header is `t=<unix seconds>,v1=<hex>` and the signature is HMAC-SHA256 with the team's
//! webhook secret over `<t>.<raw body>` (Stripe-style). The timestamp bounds replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far (in seconds) a signature's timestamp may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. Deliberately coarse in what reaches the vendor (always "invalid
/// signature"); the variant is for our own log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `certn-signature` header.
    Missing,
    /// The header has no usable `t` or `v1` part.
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECS`] away from now.
    Stale,
    /// No `v1` value matches.
    Mismatch,
}

impl SignatureError {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature header",
            SignatureError::Malformed => "malformed signature header",
            SignatureError::Stale => "signature timestamp outside tolerance",
            SignatureError::Mismatch => "signature mismatch",
        }
    }
}

/// The parts of a signature header: the timestamp as sent (it is signed verbatim) and every `v1`
/// signature (there may be several while Certn rotates a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parsed<'a> {
    timestamp: &'a str,
    signatures: Vec<Vec<u8>>,
}

fn parse(header: &str) -> Result<Parsed<'_>, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = Some(value.trim()),
            // Skip undecodable values rather than failing: another v1 may still be good.
            "v1" => {
                if let Ok(sig) = hex::decode(value.trim()) {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    match timestamp {
        Some(t) if !signatures.is_empty() && !t.is_empty() => Ok(Parsed {
            timestamp: t,
            signatures,
        }),
        _ => Err(SignatureError::Malformed),
    }
}

/// Checks `header` (the `certn-signature` value, if any) against `body`, the webhook `secret` and
/// the current time `now` (unix seconds).
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let parsed = parse(header.ok_or(SignatureError::Missing)?)?;
    let t: i64 = parsed
        .timestamp
        .parse()
        .map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(t) > TOLERANCE_SECS.unsigned_abs() {
        return Err(SignatureError::Stale);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(parsed.timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    // `verify_slice` compares in constant time; clone the state for each candidate signature.
    if parsed
        .signatures
        .iter()
        .any(|sig| mac.clone().verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Computes the header value Certn would send; used by tests (and handy for simulators).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // An HMAC key of any length is valid, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec_test";
    const BODY: &[u8] = br#"{"id":"a1","status":"COMPLETE"}"#;
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn good_signature_verifies() {
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW + 300), Ok(()));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW - 300), Ok(()));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("whsec_test", "1700000000.{...}") computed independently with openssl.
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(
            h,
            "t=1700000000,v1=".to_string() + &expected_hex_for_known_vector()
        );
    }

    fn expected_hex_for_known_vector() -> String {
        include_str!("../testdata/known_vector.hex")
            .trim()
            .to_string()
    }

    #[test]
    fn tampered_body_or_wrong_secret_fails() {
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify(SECRET, Some(&h), b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some(&h), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamp_is_signed() {
        let h = sign(SECRET, NOW, BODY).replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, Some(&h), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_signature_fails() {
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(
            verify(SECRET, Some(&h), BODY, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, Some(&h), BODY, NOW - 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_or_malformed_header_fails() {
        assert_eq!(
            verify(SECRET, None, BODY, NOW),
            Err(SignatureError::Missing)
        );
        for h in [
            "",
            "garbage",
            "t=1700000000",
            "v1=abcd",
            "t=abc,v1=00",
            "t=,v1=00",
        ] {
            let r = verify(SECRET, Some(h), BODY, NOW);
            assert!(
                matches!(r, Err(SignatureError::Malformed)),
                "{h:?} gave {r:?}"
            );
        }
    }

    #[test]
    fn any_matching_v1_is_accepted_and_spaces_tolerated() {
        let good = sign(SECRET, NOW, BODY);
        let sig = good.split("v1=").nth(1).unwrap();
        let h = format!("t={NOW}, v1=zz, v1={}, v1={sig}", "00".repeat(32));
        assert_eq!(verify(SECRET, Some(&h), BODY, NOW), Ok(()));
    }
}
