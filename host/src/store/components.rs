//! Uploaded connector components (`connector_blobs`), stored once for every host on the
//! database, keyed by the SHA-256 of their bytes. Which version serves is `deployments`
//! ([`crate::store::admin`]). Each change bumps the shared `connectors` revision, so every host
//! notices it ([`crate::store::revision`]). Validation and loading stay in `crate::wasm::deploy`.

use super::revision::{bump, Topic};
use super::sql::args;
use super::{now_ms, Result, Store};

/// A stored component, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredComponent {
    /// SHA-256 of the bytes, hex.
    pub hash: String,
    /// The connector its manifest names.
    pub connector: String,
    /// Unix milliseconds.
    pub uploaded_at: i64,
}

impl Store {
    /// Stores a validated component once; false when the same bytes were stored already.
    pub fn put_component(&self, hash: &str, connector: &str, bytes: &[u8]) -> Result<bool> {
        self.transaction(|db| {
            let added = db.execute(
                "INSERT INTO connector_blobs (hash, connector, bytes, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (hash) DO NOTHING",
                args![hash, connector, bytes, now_ms()],
            )?;
            if added > 0 {
                bump(db, Topic::Connectors)?;
            }
            Ok(added > 0)
        })
    }

    /// Every stored component (without bytes), oldest first.
    pub fn components(&self) -> Result<Vec<StoredComponent>> {
        self.db(|db| {
            db.query(
                "SELECT hash, connector, uploaded_at FROM connector_blobs
                 ORDER BY uploaded_at, hash",
                &[],
            )?
            .iter()
            .map(|r| {
                Ok(StoredComponent {
                    hash: r.text(0)?,
                    connector: r.text(1)?,
                    uploaded_at: r.int(2)?,
                })
            })
            .collect()
        })
    }

    /// The bytes of stored component `hash`.
    pub fn component_bytes(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        self.db(|db| {
            db.query_opt(
                "SELECT bytes FROM connector_blobs WHERE hash = ?1",
                args![hash],
            )?
            .map(|r| r.blob(0))
            .transpose()
        })
    }

    /// Deletes stored component `hash`, unless a deployment names it as the active version or
    /// the rollback target (checked in the same statement, so no other host's activation can
    /// slip in between). True when it was deleted.
    pub fn delete_component(&self, hash: &str) -> Result<bool> {
        self.transaction(|db| {
            let deleted = db.execute(
                "DELETE FROM connector_blobs WHERE hash = ?1
                   AND NOT EXISTS (SELECT 1 FROM deployments
                                   WHERE active_hash = ?1 OR previous_hash = ?1)",
                args![hash],
            )?;
            if deleted > 0 {
                bump(db, Topic::Connectors)?;
            }
            Ok(deleted > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::admin::Deployment;

    #[test]
    fn a_component_is_stored_once_and_never_deleted_while_it_serves_or_is_the_rollback_target() {
        crate::store::testing::on_both(|s| {
            let before = s.revisions().unwrap().connectors;
            assert!(s.put_component("aaa", "certn", b"\0asm one").unwrap());
            assert!(!s.put_component("aaa", "certn", b"\0asm one").unwrap());
            assert!(s.put_component("bbb", "certn", b"\0asm two").unwrap());
            assert!(s.put_component("ccc", "certn", b"\0asm three").unwrap());
            assert_eq!(s.revisions().unwrap().connectors, before + 3);
            assert_eq!(
                s.component_bytes("bbb").unwrap().as_deref(),
                Some(&b"\0asm two"[..])
            );
            assert_eq!(s.component_bytes("zzz").unwrap(), None);
            s.put_deployment(&Deployment {
                connector: "certn".into(),
                active_hash: "aaa".into(),
                previous_hash: Some("bbb".into()),
            })
            .unwrap();
            assert!(!s.delete_component("aaa").unwrap(), "active");
            assert!(!s.delete_component("bbb").unwrap(), "rollback target");
            assert!(s.delete_component("ccc").unwrap());
            let hashes: Vec<String> = s
                .components()
                .unwrap()
                .into_iter()
                .map(|c| c.hash)
                .collect();
            assert_eq!(hashes.len(), 2);
            assert!(hashes.contains(&"aaa".into()) && hashes.contains(&"bbb".into()));
        });
    }
}
