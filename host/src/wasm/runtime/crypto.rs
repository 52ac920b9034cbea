//! The `crypto` import (contract 0.2): hashing and signature checks done by the host, so that a
//! connector in any language verifies a vendor callback in one call instead of hand-writing
//! SHA-256. Pure functions (no state, no I/O); the WIT glue is in `bindings/v0_2.rs`.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How a digest or signature is written as text (WIT `crypto.encoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Hexadecimal; decoding accepts either case, encoding writes lower case.
    Hex,
    /// Standard base64 with padding (RFC 4648 section 4).
    Base64,
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
}

/// HMAC-SHA256 of `message` under `key` (any key length).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    let mut mac = mac(key);
    mac.update(message);
    mac.finalize().into_bytes().to_vec()
}

/// Equality in time independent of where the inputs differ (their lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Whether `signature` (text in `encoding`) is HMAC-SHA256(`key`, `message`), compared in
/// constant time. Malformed text is false, never an error.
pub fn verify_hmac_sha256(key: &[u8], message: &[u8], signature: &str, encoding: Encoding) -> bool {
    let Some(given) = decode(signature.trim(), encoding) else {
        return false;
    };
    let mut mac = mac(key);
    mac.update(message);
    mac.verify_slice(&given).is_ok()
}

/// `data` as text.
pub fn encode(data: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => hex::encode(data),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(data),
    }
}

/// Text as bytes; None when malformed.
pub fn decode(text: &str, encoding: Encoding) -> Option<Vec<u8>> {
    match encoding {
        Encoding::Hex => hex::decode(text).ok(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
    }
}

fn mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length (long keys are hashed), so this cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn sha256_known_vectors() {
        // FIPS 180-2 examples.
        assert_eq!(
            encode(&sha256(b""), Encoding::Hex),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            encode(&sha256(b"abc"), Encoding::Hex),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// RFC 4231 test cases 1, 2, 3, 4, 6 and 7 (case 5 is a truncated MAC).
    #[test]
    fn hmac_sha256_rfc4231() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 6] = [
            (
                vec![0x0b; 20],
                b"Hi There".to_vec(),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            ),
            (
                vec![0xaa; 20],
                vec![0xdd; 50],
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
            ),
            (
                hex("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
            ),
            (
                vec![0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            ),
            (
                vec![0xaa; 131],
                b"This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.".to_vec(),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
            ),
        ];
        for (key, data, expected) in cases {
            assert_eq!(encode(&hmac_sha256(&key, &data), Encoding::Hex), expected);
            assert!(verify_hmac_sha256(&key, &data, expected, Encoding::Hex));
            assert!(verify_hmac_sha256(
                &key,
                &data,
                &expected.to_uppercase(),
                Encoding::Hex
            ));
            let b64 = encode(&hex(expected), Encoding::Base64);
            assert!(verify_hmac_sha256(&key, &data, &b64, Encoding::Base64));
        }
    }

    #[test]
    fn wrong_or_malformed_signatures_are_false() {
        let good = encode(&hmac_sha256(b"Jefe", b"msg"), Encoding::Hex);
        assert!(verify_hmac_sha256(b"Jefe", b"msg", &good, Encoding::Hex));
        assert!(!verify_hmac_sha256(b"Jefe", b"msg!", &good, Encoding::Hex));
        assert!(!verify_hmac_sha256(b"jefe", b"msg", &good, Encoding::Hex));
        assert!(!verify_hmac_sha256(
            b"Jefe",
            b"msg",
            &good[..62],
            Encoding::Hex
        ));
        assert!(!verify_hmac_sha256(b"Jefe", b"msg", "zz", Encoding::Hex));
        assert!(!verify_hmac_sha256(b"Jefe", b"msg", "", Encoding::Hex));
        assert!(!verify_hmac_sha256(
            b"Jefe",
            b"msg",
            "not base64!",
            Encoding::Base64
        ));
        // A hex signature is not accepted as base64 and vice versa.
        assert!(!verify_hmac_sha256(
            b"Jefe",
            b"msg",
            &good,
            Encoding::Base64
        ));
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn encode_decode_round_trip() {
        let data = b"\x00\xffhello";
        for enc in [Encoding::Hex, Encoding::Base64] {
            assert_eq!(decode(&encode(data, enc), enc).as_deref(), Some(&data[..]));
        }
        assert_eq!(encode(b"hi", Encoding::Base64), "aGk=");
        assert_eq!(decode("aGk", Encoding::Base64), None, "padding is required");
        assert_eq!(decode("0g", Encoding::Hex), None);
        assert_eq!(decode("ABCD", Encoding::Hex), Some(vec![0xab, 0xcd]));
    }
}
