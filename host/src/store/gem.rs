//! Gem's tables: the API keys Gem calls switchyard with (`api_keys`: only the SHA-256 of a key is
//! stored) and the screenings Gem asked for (`gem_screenings`: Gem's screening id, the event that
//! starts it and, once placed, the vendor order). The rules around them (key format, hashing,
//! idempotency) stay in `crate::ats::gem`; this module holds only their SQL.

use super::locks::LockName;
use super::sql::{args, Db, Row};
use super::{enqueue_on, now_ms, Enqueued, Result, Store, StoreError};

pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS api_keys (
    integration TEXT NOT NULL,
    key_id TEXT NOT NULL PRIMARY KEY,
    hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS gem_screenings (
    integration TEXT NOT NULL,
    id TEXT NOT NULL,
    application_id TEXT NOT NULL,
    package TEXT,
    event_id INTEGER NOT NULL,
    order_ref TEXT,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (integration, id)
);
CREATE INDEX IF NOT EXISTS gem_screenings_by_order ON gem_screenings (integration, order_ref);
"#;

/// A Gem API key as listed for operators: never the key itself.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    pub integration: String,
    pub key_id: String,
    /// What the key starts with, to recognise it (`sy_<key id>_…`).
    pub prefix: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

/// A stored key's owner, hash and revocation time, for authentication.
pub struct KeyRecord {
    pub integration: String,
    pub hash: String,
    pub revoked_at_ms: Option<i64>,
}

/// A stored Gem screening.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Screening {
    pub id: String,
    pub application_id: String,
    pub package: Option<String>,
    pub event_id: i64,
    pub order_ref: Option<String>,
}

/// A new screening to store with the event that starts it.
pub struct NewScreening {
    pub integration: String,
    pub id: String,
    pub application_id: String,
    pub package: Option<String>,
    /// The event: its kind, dedupe key and payload.
    pub kind: &'static str,
    pub dedupe_key: String,
    pub payload: String,
}

/// What storing a [`NewScreening`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreeningEnqueued {
    /// Stored, started by this event.
    New { event_id: i64 },
    /// The dedupe key was taken: the payload stored under it.
    Duplicate { payload: String },
}

const COLUMNS: &str = "id, application_id, package, event_id, order_ref";

fn screening(r: &Row) -> Result<Screening> {
    Ok(Screening {
        id: r.text(0)?,
        application_id: r.text(1)?,
        package: r.opt_text(2)?,
        event_id: r.int(3)?,
        order_ref: r.opt_text(4)?,
    })
}

fn insert_screening(db: &dyn Db, s: &NewScreening) -> Result<ScreeningEnqueued> {
    match enqueue_on(db, &s.integration, s.kind, &s.dedupe_key, &s.payload)? {
        Enqueued::New(event_id) => {
            db.execute(
                "INSERT INTO gem_screenings
                    (integration, id, application_id, package, event_id, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                args![
                    &s.integration,
                    &s.id,
                    &s.application_id,
                    s.package.as_deref(),
                    event_id,
                    now_ms()
                ],
            )?;
            Ok(ScreeningEnqueued::New { event_id })
        }
        Enqueued::Duplicate { .. } => {
            let payload =
                payload_on(db, &s.integration, &s.dedupe_key)?.ok_or(StoreError::NoRow)?;
            Ok(ScreeningEnqueued::Duplicate { payload })
        }
    }
}

fn payload_on(db: &dyn Db, integration: &str, dedupe_key: &str) -> Result<Option<String>> {
    db.query_opt(
        "SELECT b.body FROM events e JOIN event_bodies b ON b.event_id = e.id
         WHERE e.integration = ?1 AND e.dedupe_key = ?2
         UNION ALL
         SELECT reply FROM tombstones
         WHERE integration = ?1 AND dedupe_key = ?2 AND reply IS NOT NULL
         LIMIT 1",
        args![integration, dedupe_key],
    )?
    .map(|r| r.text(0))
    .transpose()
}

fn insert_key_on(db: &dyn Db, integration: &str, key_id: &str, hash: &str) -> Result<()> {
    db.execute(
        "INSERT INTO api_keys (integration, key_id, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
        args![integration, key_id, hash, now_ms()],
    )?;
    Ok(())
}

/// Revokes every active key of `integration` on `db`; the ids of those it revoked.
pub(super) fn revoke_keys_on(db: &dyn Db, integration: &str) -> Result<Vec<String>> {
    let active = db
        .query(
            "SELECT key_id FROM api_keys WHERE integration = ?1 AND revoked_at IS NULL
             ORDER BY created_at, key_id",
            args![integration],
        )?
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<Vec<_>>>()?;
    db.execute(
        "UPDATE api_keys SET revoked_at = ?2 WHERE integration = ?1 AND revoked_at IS NULL",
        args![integration, now_ms()],
    )?;
    Ok(active)
}

impl Store {
    /// Stores the hash of a new Gem API key.
    pub fn insert_gem_key(&self, integration: &str, key_id: &str, hash: &str) -> Result<()> {
        self.db(|db| insert_key_on(db, integration, key_id, hash))
    }

    /// Revokes key `key_id` of `integration`, keeping the first revocation time; whether the key
    /// exists.
    pub fn revoke_gem_key(&self, integration: &str, key_id: &str) -> Result<bool> {
        let n = self.db(|db| {
            db.execute(
                "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?3)
                 WHERE integration = ?1 AND key_id = ?2",
                args![integration, key_id, now_ms()],
            )
        })?;
        Ok(n > 0)
    }

    /// Rotates `integration`'s Gem API keys in one transaction: stores the new key's hash and
    /// revokes every key active before it; returns the revoked key ids. Rotations of one
    /// integration run one at a time on every host (a transaction-scoped lock on PostgreSQL;
    /// SQLite writes one at a time), so two at once leave exactly one active key, never zero.
    pub fn rotate_gem_key(
        &self,
        integration: &str,
        key_id: &str,
        hash: &str,
    ) -> Result<Vec<String>> {
        self.transaction(|db| {
            super::locks::lock_in_transaction(db, LockName::GemKeys { integration })?;
            let revoked = revoke_keys_on(db, integration)?;
            insert_key_on(db, integration, key_id, hash)?;
            Ok(revoked)
        })
    }

    /// Every Gem API key of `integration`, oldest first.
    pub fn gem_keys(&self, integration: &str) -> Result<Vec<KeyInfo>> {
        self.db(|db| {
            db.query(
                "SELECT integration, key_id, created_at, revoked_at FROM api_keys
                 WHERE integration = ?1 ORDER BY created_at, key_id",
                args![integration],
            )?
            .iter()
            .map(|r| {
                let key_id = r.text(1)?;
                Ok(KeyInfo {
                    integration: r.text(0)?,
                    prefix: format!("sy_{key_id}_…"),
                    key_id,
                    created_at_ms: r.int(2)?,
                    revoked_at_ms: r.opt_int(3)?,
                })
            })
            .collect()
        })
    }

    /// The stored key with id `key_id`, of any integration.
    pub fn gem_key(&self, key_id: &str) -> Result<Option<KeyRecord>> {
        self.db(|db| {
            db.query_opt(
                "SELECT integration, hash, revoked_at FROM api_keys WHERE key_id = ?1",
                args![key_id],
            )?
            .map(|r| {
                Ok(KeyRecord {
                    integration: r.text(0)?,
                    hash: r.text(1)?,
                    revoked_at_ms: r.opt_int(2)?,
                })
            })
            .transpose()
        })
    }

    /// The payload of `integration`'s event stored under `dedupe_key`, if any; once the event
    /// is pruned, what its tombstone kept of it (see [`super::retention`]).
    pub fn event_payload(&self, integration: &str, dedupe_key: &str) -> Result<Option<String>> {
        self.db(|db| payload_on(db, integration, dedupe_key))
    }

    /// Commits a Gem screening and the event that starts it together, in one write of the group
    /// commit (one savepoint: both or neither).
    pub async fn enqueue_gem_screening(&self, new: NewScreening) -> Result<ScreeningEnqueued> {
        let enqueued = self.write_db(move |db| insert_screening(db, &new)).await?;
        self.notify_due(matches!(enqueued, ScreeningEnqueued::New { .. }));
        Ok(enqueued)
    }

    /// Links screening `id` to `order_ref`; with `only_unlinked`, only if it has no order yet.
    /// Whether it was linked.
    pub fn link_gem_screening(
        &self,
        integration: &str,
        id: &str,
        order_ref: &str,
        only_unlinked: bool,
    ) -> Result<bool> {
        let sql = if only_unlinked {
            "UPDATE gem_screenings SET order_ref = ?3
             WHERE integration = ?1 AND id = ?2 AND order_ref IS NULL"
        } else {
            "UPDATE gem_screenings SET order_ref = ?3 WHERE integration = ?1 AND id = ?2"
        };
        let n = self.db(|db| db.execute(sql, args![integration, id, order_ref]))?;
        Ok(n == 1)
    }

    /// A Gem screening by id.
    pub fn gem_screening(&self, integration: &str, id: &str) -> Result<Option<Screening>> {
        self.screening_where("id", integration, id)
    }

    /// The Gem screening that placed order `order_ref`, if Gem asked for it.
    pub fn gem_screening_of_order(
        &self,
        integration: &str,
        order_ref: &str,
    ) -> Result<Option<Screening>> {
        self.screening_where("order_ref", integration, order_ref)
    }

    /// The first of `integration`'s screenings whose `column` is `value`.
    fn screening_where(
        &self,
        column: &'static str,
        integration: &str,
        value: &str,
    ) -> Result<Option<Screening>> {
        self.db(|db| {
            db.query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM gem_screenings WHERE integration = ?1 AND {column} = ?2"
                ),
                args![integration, value],
            )?
            .as_ref()
            .map(screening)
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::super::testing;
    use super::*;

    fn active(s: &Store) -> Vec<String> {
        let keys = s.gem_keys("g").unwrap().into_iter();
        keys.filter(|k| k.revoked_at_ms.is_none())
            .map(|k| k.key_id)
            .collect()
    }

    #[test]
    fn a_rotation_replaces_every_active_key_with_the_new_one() {
        testing::on_both(|s| {
            s.insert_gem_key("g", "k1", "h1").unwrap();
            s.insert_gem_key("g", "k2", "h2").unwrap();
            s.insert_gem_key("other", "k9", "h9").unwrap();
            assert_eq!(s.rotate_gem_key("g", "k3", "h3").unwrap(), ["k1", "k2"]);
            assert_eq!(active(&s), ["k3"]);
            assert!(s.gem_key("k9").unwrap().unwrap().revoked_at_ms.is_none());
        });
    }

    #[test]
    fn two_hosts_rotating_at_once_leave_exactly_one_active_key() {
        let url = testing::postgres_url();
        let hosts = [
            Store::open_postgres(&url, None).unwrap(),
            Store::open_postgres(&url, None).unwrap(),
        ];
        hosts[0].insert_gem_key("g", "k0", "h0").unwrap();
        for round in 0..20 {
            let start = Arc::new(Barrier::new(2));
            let rotations: Vec<_> = hosts
                .iter()
                .enumerate()
                .map(|(host, store)| {
                    let (store, start) = (store.clone(), start.clone());
                    std::thread::spawn(move || {
                        start.wait();
                        store.rotate_gem_key("g", &format!("r{round}h{host}"), "h")
                    })
                })
                .collect();
            for rotation in rotations {
                rotation.join().expect("joined").expect("rotated");
            }
            let now = active(&hosts[0]);
            assert_eq!(now.len(), 1, "round {round}: one active key, not {now:?}");
            assert!(now[0].starts_with(&format!("r{round}h")), "{now:?}");
        }
    }
}
