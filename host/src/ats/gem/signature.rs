//! Standard Webhooks signatures (<https://www.standardwebhooks.com>):
//! `webhook-signature: v1,<base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}"))>`, one
//! space-separated `v1,` entry per active secret (two during a rotation's overlap window).
//!
//! The secret is used as the raw UTF-8 bytes of the configured string (no `whsec_` base64
//! decoding), which is what Gem is told in `docs/gem.md`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the message id (the same on every retry of one webhook).
pub const HEADER_ID: &str = "webhook-id";
/// The header carrying the attempt's unix time in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// The header carrying the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// The base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under `secret`.
pub fn sign(secret: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `webhook-signature` header value: `v1,<sig>` per secret, space-separated.
pub fn header(secrets: &[&[u8]], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| format!("v1,{}", sign(s, id, timestamp, body)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1,` entry of `header_value` is the signature of the message under `secret`
/// (constant-time comparison).
pub fn verify(secret: &[u8], header_value: &str, id: &str, timestamp: i64, body: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    let expected = sign(secret, id, timestamp, body);
    header_value
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| bool::from(sig.as_bytes().ct_eq(expected.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // From the Standard Webhooks reference libraries: secret `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw`
        // (base64 part decoded), id `msg_p5jXN8AQM9LWM0D4loKWxJek`, timestamp 1614265330.
        let secret = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .expect("base64");
        let sig = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn every_active_secret_signs_and_any_one_verifies() {
        let h = header(&[b"new", b"old"], "id1", 1000, b"{}");
        assert_eq!(h.split(' ').count(), 2);
        assert!(verify(b"old", &h, "id1", 1000, b"{}"));
        assert!(verify(b"new", &h, "id1", 1000, b"{}"));
        assert!(!verify(b"other", &h, "id1", 1000, b"{}"));
        assert!(!verify(b"new", &h, "id1", 1001, b"{}"));
        assert!(!verify(b"new", &h, "id2", 1000, b"{}"));
    }
}
