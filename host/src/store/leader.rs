//! Leadership of a housekeeping duty among the hosts on one database: a row of `leaders`
//! (`name`, `holder`, `expires_at`) that its holder renews before it expires and any other host
//! takes over once it has (the holder died or lost the database). One statement takes or renews
//! it, so two hosts never both lead (`INSERT … ON CONFLICT DO UPDATE … WHERE`, atomic on
//! PostgreSQL). A holder that fails to renew in time must stop leading (see
//! `crate::flow::leader`): its row may be someone else's by then.
//!
//! SQLite is one process per file: that process always leads, without the table.

use super::sql::args;
use super::{now_ms, Backend, Result, Store};

/// The duty of retention passes, pruning and the replay-job runner.
pub const HOUSEKEEPING: &str = "housekeeping";

impl Store {
    /// Takes or renews the lead of `duty` for `holder` (a run id) for `ttl_ms`: whether
    /// `holder` leads now.
    pub fn lead(&self, duty: &str, holder: &str, ttl_ms: i64) -> Result<bool> {
        self.lead_at(duty, holder, now_ms(), ttl_ms)
    }

    fn lead_at(&self, duty: &str, holder: &str, now: i64, ttl_ms: i64) -> Result<bool> {
        if let Backend::Sqlite { .. } = self.backend {
            return Ok(true);
        }
        let row = self.db(|db| {
            db.query_opt(
                "INSERT INTO leaders (name, holder, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                    expires_at = excluded.expires_at
                 WHERE leaders.holder = excluded.holder OR leaders.expires_at < ?4
                 RETURNING holder",
                args![duty, holder, now + ttl_ms, now],
            )
        })?;
        Ok(row.is_some())
    }

    /// How far the database's clock is ahead of `now` (this host's clock, unix ms; negative:
    /// behind), measured against the middle of the query's round trip; None on SQLite, whose
    /// database is on this host. Leases and the lead are written with each host's clock and
    /// read by the others: see `crate::flow::skew`.
    pub fn clock_skew_ms(&self, now: impl Fn() -> i64) -> Result<Option<i64>> {
        if let Backend::Sqlite { .. } = self.backend {
            return Ok(None);
        }
        self.db(|db| {
            let sent = now();
            let database = db
                .query_one(
                    "SELECT CAST(extract(epoch from clock_timestamp()) * 1000 AS BIGINT)",
                    &[],
                )?
                .int(0)?;
            let received = now();
            Ok(Some(database - (sent + received) / 2))
        })
    }

    /// Gives up the lead of `duty` if `holder` has it (a graceful stop), so another host takes
    /// over at once rather than after the lead expires.
    pub fn resign(&self, duty: &str, holder: &str) -> Result<()> {
        if let Backend::Postgres { .. } = self.backend {
            self.db(|db| {
                db.execute(
                    "DELETE FROM leaders WHERE name = ?1 AND holder = ?2",
                    args![duty, holder],
                )
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    const TTL: i64 = 10_000;

    #[test]
    fn the_one_sqlite_process_always_leads() {
        let store = testing::sqlite();
        assert!(store.lead(HOUSEKEEPING, "a", TTL).unwrap());
        assert!(store.lead(HOUSEKEEPING, "b", TTL).unwrap());
    }

    #[test]
    fn one_host_leads_renews_and_is_taken_over_once_its_lead_expired() {
        let url = testing::postgres_url();
        let (a, b) = (
            Store::open_postgres(&url, None).unwrap(),
            Store::open_postgres(&url, None).unwrap(),
        );
        let t = now_ms();
        assert!(a.lead_at(HOUSEKEEPING, "run-a", t, TTL).unwrap());
        assert!(!b.lead_at(HOUSEKEEPING, "run-b", t + 1, TTL).unwrap());
        assert!(
            a.lead_at(HOUSEKEEPING, "run-a", t + TTL - 1, TTL).unwrap(),
            "renewed before it expired"
        );
        assert!(!b.lead_at(HOUSEKEEPING, "run-b", t + TTL + 1, TTL).unwrap());
        // Host a stops renewing: once its lead expired, b takes over, and a does not get it back.
        let later = t + 2 * TTL + 1;
        assert!(b.lead_at(HOUSEKEEPING, "run-b", later, TTL).unwrap());
        assert!(!a.lead_at(HOUSEKEEPING, "run-a", later + 1, TTL).unwrap());
        assert!(
            a.lead_at("another duty", "run-a", later, TTL).unwrap(),
            "duties are apart"
        );
    }

    #[test]
    fn a_host_that_resigns_hands_the_lead_over_at_once() {
        let url = testing::postgres_url();
        let (a, b) = (
            Store::open_postgres(&url, None).unwrap(),
            Store::open_postgres(&url, None).unwrap(),
        );
        assert!(a.lead(HOUSEKEEPING, "run-a", TTL).unwrap());
        b.resign(HOUSEKEEPING, "run-b").unwrap();
        assert!(
            !b.lead(HOUSEKEEPING, "run-b", TTL).unwrap(),
            "not b's to give"
        );
        a.resign(HOUSEKEEPING, "run-a").unwrap();
        assert!(b.lead(HOUSEKEEPING, "run-b", TTL).unwrap());
    }
}
