//! Tests of `signature`, through `FakeHost`'s native crypto. The known vectors were computed
//! independently with `openssl dgst -sha256 -hmac`.

use super::*;
use crate::testing::{hmac_sha256_hex, stripe_signature, FakeHost};

const SECRET: &[u8] = b"whsec_test";
const NOW: i64 = 1_700_000_000;

fn host() -> FakeHost {
    FakeHost::new().with_now(NOW)
}

mod stripe_style {
    use super::*;

    const BODY: &[u8] = br#"{"id":"a1","status":"COMPLETE"}"#;

    fn verify(header: Option<&str>, body: &[u8], now: i64) -> Result<(), SignatureError> {
        verify_stripe_style(
            &host().with_now(now),
            SECRET,
            header,
            body,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn known_vector() {
        assert_eq!(
            stripe_signature(SECRET, NOW, BODY),
            "t=1700000000,v1=302173055562b87e0ed7d63d8d9944cc652372fdecb67b7b30414400577e7f7d"
        );
    }

    #[test]
    fn good_signature_verifies_within_tolerance() {
        let h = stripe_signature(SECRET, NOW, BODY);
        for now in [NOW, NOW + 300, NOW - 300] {
            assert_eq!(verify(Some(&h), BODY, now), Ok(()));
        }
    }

    #[test]
    fn tampered_body_wrong_secret_or_moved_timestamp_fails() {
        let h = stripe_signature(SECRET, NOW, BODY);
        assert_eq!(verify(Some(&h), b"{}", NOW), Err(SignatureError::Mismatch));
        let other = stripe_signature(b"other", NOW, BODY);
        assert_eq!(
            verify(Some(&other), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        let moved = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(Some(&moved), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_signature_fails() {
        let h = stripe_signature(SECRET, NOW, BODY);
        assert_eq!(
            verify(Some(&h), BODY, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&h), BODY, NOW - 301),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_or_malformed_header_fails() {
        assert_eq!(verify(None, BODY, NOW), Err(SignatureError::Missing));
        for h in [
            "",
            "garbage",
            "t=1700000000",
            "v1=abcd",
            "t=abc,v1=00",
            "t=,v1=00",
            "t=-5,v1=00",
        ] {
            let r = verify(Some(h), BODY, NOW);
            assert_eq!(r, Err(SignatureError::Malformed), "{h:?}");
        }
    }

    #[test]
    fn any_matching_v1_is_accepted_and_spaces_tolerated() {
        let good = stripe_signature(SECRET, NOW, BODY);
        let sig = good.split("v1=").nth(1).unwrap();
        let h = format!("t={NOW}, v1=zz, v1={}, v1={sig}", "00".repeat(32));
        assert_eq!(verify(Some(&h), BODY, NOW), Ok(()));
    }

    #[test]
    fn a_flood_of_values_is_cut_off() {
        let good = stripe_signature(SECRET, NOW, BODY);
        let sig = good.split("v1=").nth(1).unwrap();
        let junk = format!("v1={},", "00".repeat(32)).repeat(40);
        let h = format!("t={NOW},{junk}v1={sig}");
        assert_eq!(verify(Some(&h), BODY, NOW), Err(SignatureError::Mismatch));
    }
}

mod timestamped {
    use super::*;

    const BODY: &[u8] = br#"{"order_id":"JF-1","status":"Complete"}"#;

    fn sign(secret: &[u8], ts: &str, body: &[u8]) -> String {
        format!(
            "sha256={}",
            hmac_sha256_hex(secret, &signed_message(ts, body))
        )
    }

    fn verify(
        secret: &[u8],
        ts: Option<&str>,
        sig: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), SignatureError> {
        verify_timestamped(
            &host().with_now(now),
            secret,
            ts.unwrap_or_default(),
            sig,
            body,
            Encoding::Hex,
            DEFAULT_TOLERANCE_SECS,
        )
    }

    #[test]
    fn known_vector() {
        assert_eq!(
            sign(SECRET, "1700000000", BODY),
            "sha256=2f643ca0767112655e5a0c8669d2533bd40e7680a464c2ce3a9e0a50bec36b9a"
        );
    }

    #[test]
    fn round_trip_rotation_and_unprefixed_values() {
        let good = sign(SECRET, "1700000000", BODY);
        let ok = |sig: &str| verify(SECRET, Some("1700000000"), Some(sig), BODY, NOW + 100);
        assert_eq!(ok(&good), Ok(()));
        let old = sign(b"old", "1700000000", BODY);
        assert_eq!(ok(&format!("{old}, {good}")), Ok(()));
        assert_eq!(ok(good.trim_start_matches("sha256=")), Ok(()));
        assert_eq!(
            ok(&good.to_uppercase().replace("SHA256=", "sha256=")),
            Ok(())
        );
    }

    #[test]
    fn failures() {
        let sig = sign(SECRET, "1700000000", BODY);
        let ts = Some("1700000000");
        let v =
            |secret: &[u8], ts, s: Option<&str>, body: &[u8], now| verify(secret, ts, s, body, now);
        assert_eq!(
            v(SECRET, None, Some(&sig), BODY, NOW),
            Err(SignatureError::Missing)
        );
        assert_eq!(v(SECRET, ts, None, BODY, NOW), Err(SignatureError::Missing));
        assert_eq!(
            v(SECRET, Some("soon"), Some(&sig), BODY, NOW),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            v(SECRET, Some("1234567890123"), Some(&sig), BODY, NOW),
            Err(SignatureError::Malformed)
        );
        for bad in ["md5=abc", "sha256=zz", "sha256="] {
            assert_eq!(
                v(SECRET, ts, Some(bad), BODY, NOW),
                Err(SignatureError::Malformed)
            );
        }
        assert_eq!(
            v(SECRET, ts, Some(&sig), BODY, NOW + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(SECRET, ts, Some(&sig), BODY, NOW - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            v(b"other", ts, Some(&sig), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v(SECRET, ts, Some(&sig), b"{}", NOW),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it invalidates the signature.
        assert_eq!(
            v(SECRET, Some("1700000001"), Some(&sig), BODY, NOW),
            Err(SignatureError::Mismatch)
        );
    }
}

mod body_only {
    use super::*;

    #[test]
    fn hex_and_base64() {
        let host = host();
        let body = b"payload";
        let mac = host.hmac_sha256(SECRET, body);
        let hex = format!("sha256={}", host.encode(&mac, Encoding::Hex));
        let b64 = host.encode(&mac, Encoding::Base64);
        assert_eq!(
            verify_body(&host, SECRET, Some(&hex), body, Encoding::Hex),
            Ok(())
        );
        assert_eq!(
            verify_body(&host, SECRET, Some(&b64), body, Encoding::Base64),
            Ok(())
        );
        assert_eq!(
            verify_body(&host, b"x", Some(&b64), body, Encoding::Base64),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_body(&host, SECRET, Some("!!"), body, Encoding::Base64),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_body(&host, SECRET, None, body, Encoding::Hex),
            Err(SignatureError::Missing)
        );
    }
}
