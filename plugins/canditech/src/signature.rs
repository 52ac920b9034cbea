//! Verification of `Canditech-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>]`: HMAC-SHA256 with
//! the integration's webhook secret over `<t>.<raw body>`, any `v1` matching (there are two while
//! Canditech rotates a secret), and `t` at most [`TOLERANCE_SECS`] from our clock.
//!
//! The HMAC itself is the host's (`crypto.verify-hmac-sha256`, constant-time); this module only
//! parses the header and decides, so it is tested natively with any [`Hmac`] implementation.

/// How far (in seconds) a signature's timestamp may be from our clock, either way.
pub const TOLERANCE_SECS: u64 = 300;

/// Checks one hex signature: true when it is HMAC-SHA256(`key`, `message`), compared in constant
/// time.
pub trait Hmac {
    fn verify_hex(&self, key: &[u8], message: &[u8], signature_hex: &str) -> bool;
}

/// Why a callback was refused. The vendor only ever sees "invalid signature"; the variant is for
/// our log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No `canditech-signature` header.
    Missing,
    /// No usable `t` or `v1`.
    Malformed,
    /// `t` is too far from now.
    Stale,
    /// No `v1` matches.
    Mismatch,
}

impl SignatureError {
    /// A short description for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureError::Missing => "missing signature header",
            SignatureError::Malformed => "malformed signature header",
            SignatureError::Stale => "signature timestamp outside the tolerance window",
            SignatureError::Mismatch => "signature mismatch",
        }
    }
}

/// Verifies `header` over `body`; returns the signed timestamp `t` (part of the replay key).
pub fn verify(
    hmac: &dyn Hmac,
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: u64,
) -> Result<u64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => timestamp = Some(value.trim()),
            "v1" if !value.trim().is_empty() => signatures.push(value.trim()),
            // Other schemes (v0, v2) are ignored, as documented.
            _ => {}
        }
    }
    let t_text = timestamp
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let t: u64 = t_text.parse().map_err(|_| SignatureError::Malformed)?;
    if now.abs_diff(t) > TOLERANCE_SECS {
        return Err(SignatureError::Stale);
    }
    let mut message = Vec::with_capacity(t_text.len() + 1 + body.len());
    message.extend_from_slice(t_text.as_bytes());
    message.push(b'.');
    message.extend_from_slice(body);
    if signatures
        .iter()
        .any(|sig| hmac.verify_hex(secret, &message, sig))
    {
        Ok(t)
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use hmac::Mac;

    /// The host's `verify-hmac-sha256`, natively.
    pub struct NativeHmac;

    impl Hmac for NativeHmac {
        fn verify_hex(&self, key: &[u8], message: &[u8], signature_hex: &str) -> bool {
            let Ok(sig) = hex::decode(signature_hex) else {
                return false;
            };
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
            mac.update(message);
            mac.verify_slice(&sig).is_ok()
        }
    }

    /// The header Canditech sends.
    pub fn sign(secret: &str, t: u64, body: &[u8]) -> String {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    const SECRET: &str = "whsec_test";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"test.started"}"#;
    const NOW: u64 = 1_746_100_800;

    fn check(header: Option<&str>, body: &[u8], now: u64) -> Result<u64, SignatureError> {
        verify(&NativeHmac, SECRET.as_bytes(), header, body, now)
    }

    #[test]
    fn a_good_signature_inside_the_window_verifies() {
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(check(Some(&h), BODY, NOW), Ok(NOW));
        assert_eq!(check(Some(&h), BODY, NOW + 300), Ok(NOW));
        assert_eq!(check(Some(&h), BODY, NOW - 300), Ok(NOW));
    }

    #[test]
    fn stale_or_future_timestamps_are_refused() {
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(check(Some(&h), BODY, NOW + 301), Err(SignatureError::Stale));
        assert_eq!(check(Some(&h), BODY, NOW - 301), Err(SignatureError::Stale));
    }

    #[test]
    fn forged_tampered_or_retimed_requests_are_refused() {
        let forged = sign("whsec_other", NOW, BODY);
        assert_eq!(
            check(Some(&forged), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        let h = sign(SECRET, NOW, BODY);
        assert_eq!(check(Some(&h), b"{}", NOW), Err(SignatureError::Mismatch));
        let retimed = h.replace(&format!("t={NOW}"), &format!("t={}", NOW + 1));
        assert_eq!(
            check(Some(&retimed), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn during_a_rotation_any_v1_may_match_and_other_schemes_are_ignored() {
        let good = sign(SECRET, NOW, BODY);
        let sig = good.split("v1=").nth(1).unwrap();
        let h = format!("t={NOW},v0=abc,v1={},v1={sig},v2=zz", "00".repeat(32));
        assert_eq!(check(Some(&h), BODY, NOW), Ok(NOW));
    }

    #[test]
    fn missing_or_malformed_headers_are_refused() {
        assert_eq!(check(None, BODY, NOW), Err(SignatureError::Missing));
        for h in [
            "",
            "garbage",
            "t=1746100800",
            "v1=abcd",
            "t=abc,v1=00",
            "t=,v1=00",
            "t=-5,v1=00",
        ] {
            assert_eq!(
                check(Some(h), BODY, NOW),
                Err(SignatureError::Malformed),
                "{h:?}"
            );
        }
    }
}
