//! This host's clock against the database's. Heartbeats, leases and the housekeeping leader's
//! TTL are written with each host's own clock and compared by the others: a host whose clock
//! runs a lease ahead would take a live host's events or lead at once, one a lease behind would
//! keep a dead host's. PostgreSQL's `clock_timestamp()` is the reference every host shares.
//!
//! [`at_start`] refuses to start when the skew exceeds a lease (`worker.lease_secs`);
//! [`observe`], on each heartbeat round, sets `switchyard_clock_skew_ms` (also in `/healthz`)
//! and warns once each time the skew grows past a quarter of a lease. On SQLite (one host, its
//! own disk) there is nothing to compare.

use crate::app::App;
use crate::store::{Store, StoreError};

/// Why the host refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum SkewError {
    #[error(
        "this host's clock reads {} but the database's reads {}: {skew_ms} ms apart, more than a \
         lease (worker.lease_secs = {lease_secs}), so hosts would take each other's events or \
         housekeeping lead early or late; fix this host's time sync (NTP) and start again",
        shown(*host_ms), shown(host_ms + skew_ms)
    )]
    TooFar {
        /// This host's clock, unix ms.
        host_ms: i64,
        /// The database's clock minus this host's.
        skew_ms: i64,
        lease_secs: u64,
    },
    #[error("cannot read the database's clock: {0}")]
    Store(#[from] StoreError),
}

/// Unix ms as RFC 3339 (whole seconds).
fn shown(ms: i64) -> String {
    crate::clock::rfc3339(ms.div_euclid(1000))
}

/// Measures the skew with `now` as this host's clock (unix ms); refuses a skew over a lease.
/// The skew (None on SQLite) otherwise.
pub fn at_start(
    store: &Store,
    lease_secs: u64,
    now: impl Fn() -> i64,
) -> Result<Option<i64>, SkewError> {
    let Some(skew_ms) = store.clock_skew_ms(&now)? else {
        return Ok(None);
    };
    if skew_ms.unsigned_abs() > lease_secs.saturating_mul(1000) {
        return Err(SkewError::TooFar {
            host_ms: now(),
            skew_ms,
            lease_secs,
        });
    }
    Ok(Some(skew_ms))
}

/// One heartbeat round's check: the gauge, and a warning when the skew passes a quarter of a
/// lease (once, until it comes back under).
pub fn observe(app: &App) {
    let skew_ms = match app.store.clock_skew_ms(crate::clock::now_ms) {
        Ok(Some(skew_ms)) => skew_ms,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the database's clock");
            return;
        }
    };
    let lease_secs = app.config.worker.lease_secs;
    let far = skew_ms.abs() > lease_secs.max(1) as i64 * 1000 / 4;
    if app.metrics.clock_skew(skew_ms, far) {
        tracing::warn!(skew_ms, lease_secs,
            "this host's clock is more than a quarter of a lease away from the database's: \
             leases and the housekeeping lead may move between hosts early or late; fix its time sync (NTP)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_ms;
    use crate::store::testing;

    #[test]
    fn a_host_whose_clock_is_a_lease_away_from_the_databases_refuses_to_start() {
        let store = testing::postgres();
        let skew = at_start(&store, 30, now_ms)
            .expect("in step")
            .expect("measured");
        assert!(skew.abs() < 1_000, "one machine's clocks agree: {skew} ms");
        let behind = || now_ms() - 3_600_000;
        match at_start(&store, 30, behind) {
            Err(
                e @ SkewError::TooFar {
                    host_ms, skew_ms, ..
                },
            ) => {
                assert!((host_ms - behind()).abs() < 5_000, "this host's clock: {e}");
                assert!(
                    (host_ms + skew_ms - now_ms()).abs() < 5_000,
                    "the database's: {e}"
                );
                let message = e.to_string();
                assert!(message.contains(&shown(host_ms)), "{message}");
                assert!(message.contains(&shown(host_ms + skew_ms)), "{message}");
                assert!(message.contains("worker.lease_secs = 30"), "{message}");
            }
            other => panic!("an hour behind must refuse: {other:?}"),
        }
        let close = || now_ms() + 20_000;
        assert!(at_start(&store, 30, close).is_ok(), "within a lease");
    }

    #[test]
    fn sqlite_has_no_other_clock() {
        let store = testing::sqlite();
        let far = || now_ms() + 3_600_000;
        assert_eq!(at_start(&store, 30, far).expect("nothing to compare"), None);
    }
}
