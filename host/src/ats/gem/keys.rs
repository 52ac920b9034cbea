//! API keys Gem uses to call switchyard (`X-API-Key`).
//!
//! A key is `sy_<key id>_<secret>`: the key id (12 hex) is public and names the key in listings
//! and logs; the whole key is shown once, when it is issued, and only its SHA-256 is stored. A
//! presented key is checked by looking its id up and comparing hashes in constant time. Keys are
//! per integration, several may be active at once (to rotate without downtime), and a revoked key
//! stays listed (with its revocation time) but never authenticates again. Keys live in the store,
//! so issuing or revoking one takes effect on a running host at once.

use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

pub use crate::store::gem::KeyInfo;
use crate::store::{Store, StoreError};

/// A freshly issued key. `key` is shown once and not stored.
pub struct IssuedKey {
    pub key_id: String,
    pub key: String,
}

impl std::fmt::Debug for IssuedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IssuedKey {{ key_id: {}, key: *** }}", self.key_id)
    }
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no key `{0}` for this integration")]
    UnknownKey(String),
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The key id of a well-formed key.
fn key_id_of(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("sy_")?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty())
        .then_some(id)
}

/// A new random key (not stored yet).
fn generate() -> IssuedKey {
    let mut rng = rand::thread_rng();
    let key_id = hex::encode(rng.gen::<[u8; 6]>());
    let secret: String = (&mut rng)
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(40)
        .map(char::from)
        .collect();
    let key = format!("sy_{key_id}_{secret}");
    IssuedKey { key_id, key }
}

/// Issues a new key for `integration` and stores its hash.
pub fn issue(store: &Store, integration: &str) -> Result<IssuedKey, KeyError> {
    let issued = generate();
    store.insert_gem_key(integration, &issued.key_id, &hash(&issued.key))?;
    Ok(issued)
}

/// Replaces every active key of `integration` with one new key, in one transaction (see
/// [`Store::rotate_gem_key`]): on every host, two rotations at once leave one active key.
/// Returns the new key and the ids of the keys it revoked.
pub fn rotate(store: &Store, integration: &str) -> Result<(IssuedKey, Vec<String>), KeyError> {
    let issued = generate();
    let revoked = store.rotate_gem_key(integration, &issued.key_id, &hash(&issued.key))?;
    Ok((issued, revoked))
}

/// Revokes key `key_id` of `integration` (idempotent: revoking twice keeps the first time).
pub fn revoke(store: &Store, integration: &str, key_id: &str) -> Result<(), KeyError> {
    if !store.revoke_gem_key(integration, key_id)? {
        return Err(KeyError::UnknownKey(key_id.to_string()));
    }
    Ok(())
}

/// Every key of `integration`, oldest first.
pub fn list(store: &Store, integration: &str) -> Result<Vec<KeyInfo>, KeyError> {
    Ok(store.gem_keys(integration)?)
}

/// The key id if `presented` is an active key of `integration`; `None` for anything else
/// (malformed, unknown, another integration's, revoked).
pub fn authenticate(
    store: &Store,
    integration: &str,
    presented: &str,
) -> Result<Option<String>, KeyError> {
    let Some(key_id) = key_id_of(presented.trim()) else {
        return Ok(None);
    };
    let Some(stored) = store.gem_key(key_id)? else {
        return Ok(None);
    };
    let matches = bool::from(
        hash(presented.trim())
            .as_bytes()
            .ct_eq(stored.hash.as_bytes()),
    );
    Ok(
        (matches && stored.integration == integration && stored.revoked_at_ms.is_none())
            .then(|| key_id.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_keys_authenticate_until_revoked_and_only_for_their_integration() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let store = Store::open(&dir.join("t.db")).expect("open");
        let a = issue(&store, "gem-a").expect("issue");
        let b = issue(&store, "gem-a").expect("issue");
        assert_eq!(
            authenticate(&store, "gem-a", &a.key).unwrap().as_deref(),
            Some(a.key_id.as_str())
        );
        assert!(
            authenticate(&store, "gem-a", &b.key).unwrap().is_some(),
            "several keys are active at once"
        );
        assert!(authenticate(&store, "gem-b", &a.key).unwrap().is_none());
        let mut forged = a.key.clone();
        forged.pop();
        forged.push('!');
        assert!(authenticate(&store, "gem-a", &forged).unwrap().is_none());
        assert!(authenticate(&store, "gem-a", "nonsense").unwrap().is_none());
        revoke(&store, "gem-a", &a.key_id).expect("revoke");
        assert!(authenticate(&store, "gem-a", &a.key).unwrap().is_none());
        assert!(authenticate(&store, "gem-a", &b.key).unwrap().is_some());
        let listed = list(&store, "gem-a").unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed
            .iter()
            .all(|k| !format!("{k:?}").contains(&a.key) && !format!("{k:?}").contains(&b.key)));
        assert!(matches!(
            revoke(&store, "gem-a", "000000000000"),
            Err(KeyError::UnknownKey(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }
}
