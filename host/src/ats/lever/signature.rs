//! Lever's webhook signature: hex(HMAC-SHA256(key = the webhook's signature token,
//! message = `token` + `triggeredAt` as decimal text)), compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `signature` (hex) is Lever's signature of `token` and `triggered_at` under `key`.
pub fn verify(key: &str, token: &str, triggered_at: i64, signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
        return false;
    };
    mac.update(token.as_bytes());
    mac.update(triggered_at.to_string().as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected).is_ok()
}

/// Lever's signature of `token` and `triggered_at` under `key` (for simulators and tests).
pub fn sign(key: &str, token: &str, triggered_at: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(token.as_bytes());
    mac.update(triggered_at.to_string().as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_its_own_signature_and_rejects_any_change() {
        let sig = sign("secret-token", "abc", 1431454330072);
        assert!(verify("secret-token", "abc", 1431454330072, &sig));
        assert!(!verify("other-token", "abc", 1431454330072, &sig));
        assert!(!verify("secret-token", "abd", 1431454330072, &sig));
        assert!(!verify("secret-token", "abc", 1431454330073, &sig));
        assert!(!verify("secret-token", "abc", 1431454330072, "zz-not-hex"));
    }
}
