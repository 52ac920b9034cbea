//! Uploaded connector components (`connector_blobs`), stored once for every host on the
//! database, keyed by the SHA-256 of their bytes. Which version serves is `deployments`
//! ([`crate::store::admin`]). Each change bumps the shared `connectors` revision, so every host
//! notices it ([`crate::store::revision`]). Validation and loading stay in `crate::wasm::deploy`.

use super::admin::{deployment_row, Deployment};
use super::locks::{lock_in_transaction, LockName};
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

/// What [`Store::delete_component`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentDelete {
    Deleted,
    /// Kept: a deployment names it (active, or the rollback target of a deployment the caller
    /// did not see).
    InUse,
    /// There was no such stored component (deleted already, or never stored: a dir version).
    NotStored,
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

    /// Deletes stored component `hash`, unless a deployment names it as the active version, or
    /// as the rollback target of a deployment other than `seen` (what the caller served when it
    /// chose to remove the version: that rollback target is dropped with it). Checked and done
    /// in one transaction that deployment changes on every host wait for, so no other host's
    /// activation or rollback can slip in between: [`ComponentDelete::InUse`] then, and nothing
    /// changed.
    pub fn delete_component(
        &self,
        hash: &str,
        seen: Option<&Deployment>,
    ) -> Result<ComponentDelete> {
        self.transaction(|db| {
            lock_in_transaction(db, LockName::Deployments)?;
            let naming = db
                .query(
                    "SELECT connector, active_hash, previous_hash FROM deployments
                     WHERE active_hash = ?1 OR previous_hash = ?1",
                    args![hash],
                )?
                .iter()
                .map(deployment_row)
                .collect::<Result<Vec<_>>>()?;
            if naming
                .iter()
                .any(|d| d.active_hash == hash || Some(d) != seen)
            {
                return Ok(ComponentDelete::InUse);
            }
            for d in &naming {
                db.execute(
                    "UPDATE deployments SET previous_hash = NULL, updated_at = ?2
                     WHERE connector = ?1",
                    args![&d.connector, now_ms()],
                )?;
            }
            let deleted = db.execute("DELETE FROM connector_blobs WHERE hash = ?1", args![hash])?;
            if deleted > 0 || !naming.is_empty() {
                bump(db, Topic::Connectors)?;
            }
            Ok(if deleted > 0 {
                ComponentDelete::Deleted
            } else {
                ComponentDelete::NotStored
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ComponentDelete::{Deleted, InUse, NotStored};
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
            let deployed = Deployment {
                connector: "certn".into(),
                active_hash: "aaa".into(),
                previous_hash: Some("bbb".into()),
            };
            s.put_deployment(&deployed).unwrap();
            assert_eq!(
                s.delete_component("aaa", Some(&deployed)).unwrap(),
                InUse,
                "active"
            );
            assert_eq!(
                s.delete_component("bbb", None).unwrap(),
                InUse,
                "the rollback target of a deployment the caller did not see"
            );
            assert_eq!(s.delete_component("ccc", None).unwrap(), Deleted);
            assert_eq!(s.delete_component("ccc", None).unwrap(), NotStored);
            let hashes: Vec<String> = s
                .components()
                .unwrap()
                .into_iter()
                .map(|c| c.hash)
                .collect();
            assert_eq!(hashes.len(), 2);
            assert!(hashes.contains(&"aaa".into()) && hashes.contains(&"bbb".into()));
            assert_eq!(s.deployment("certn").unwrap().as_ref(), Some(&deployed));
        });
    }

    #[test]
    fn a_rollback_target_goes_only_as_its_remover_saw_it() {
        crate::store::testing::on_both(|s| {
            s.put_component("aaa", "certn", b"\0asm one").unwrap();
            s.put_component("bbb", "certn", b"\0asm two").unwrap();
            s.put_component("ccc", "certn", b"\0asm three").unwrap();
            let seen = Deployment {
                connector: "certn".into(),
                active_hash: "aaa".into(),
                previous_hash: Some("ccc".into()),
            };
            // Another host rolled back to `ccc` after this one read the deployment: `aaa`,
            // the rollback target now, stays.
            let now = Deployment {
                connector: "certn".into(),
                active_hash: "ccc".into(),
                previous_hash: Some("aaa".into()),
            };
            s.put_deployment(&now).unwrap();
            let revision = s.revisions().unwrap().connectors;
            assert_eq!(s.delete_component("aaa", Some(&seen)).unwrap(), InUse);
            assert!(s.component_bytes("aaa").unwrap().is_some());
            assert_eq!(s.deployment("certn").unwrap().as_ref(), Some(&now));
            assert_eq!(
                s.revisions().unwrap().connectors,
                revision,
                "nothing changed"
            );
            // As seen: dropped with the deployment's rollback target.
            assert_eq!(s.delete_component("aaa", Some(&now)).unwrap(), Deleted);
            let after = s.deployment("certn").unwrap().expect("still deployed");
            assert_eq!(
                (after.active_hash.as_str(), after.previous_hash),
                ("ccc", None)
            );
            assert!(s.component_bytes("aaa").unwrap().is_none());
        });
    }
}
