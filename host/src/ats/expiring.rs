//! A small map of ATS reads that expire: what an ATS says about its postings and stages, kept
//! for a short lifetime so that each event does not read it again, yet a change the customer
//! makes on the ATS (a posting's tag fixed, a stage renamed) is seen within that lifetime.
//!
//! Bounded: at most `capacity` entries; a full map drops its expired entries, then the oldest.
//! One per integration's adapter, so an integration change (which builds a new adapter) starts
//! empty.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The longest an ATS read is reused.
pub const LIFETIME: Duration = Duration::from_secs(30);

/// The clock entries are dated by (unix ms); tests pass their own.
pub type Clock = fn() -> i64;

/// Values read from an ATS, by key, each kept for [`Expiring::lifetime`].
pub struct Expiring<V> {
    entries: Mutex<HashMap<String, (i64, V)>>,
    capacity: usize,
    lifetime_ms: i64,
    now: Clock,
}

impl<V: Clone> Expiring<V> {
    /// A map of at most `capacity` entries, each kept for [`LIFETIME`].
    pub fn new(capacity: usize) -> Expiring<V> {
        Expiring::with_clock(capacity, LIFETIME, crate::clock::now_ms)
    }

    /// [`Expiring::new`] with another lifetime and clock.
    pub fn with_clock(capacity: usize, lifetime: Duration, now: Clock) -> Expiring<V> {
        Expiring {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            lifetime_ms: lifetime.as_millis() as i64,
            now,
        }
    }

    /// The value read for `key` less than the lifetime ago.
    pub fn get(&self, key: &str) -> Option<V> {
        let now = (self.now)();
        let entries = self.entries();
        let (at, value) = entries.get(key)?;
        (now - at < self.lifetime_ms).then(|| value.clone())
    }

    /// [`Expiring::get`], removing the entry: a value used once, so the map holds only values
    /// still waiting for their use.
    pub fn take(&self, key: &str) -> Option<V> {
        let now = (self.now)();
        let (at, value) = self.entries().remove(key)?;
        (now - at < self.lifetime_ms).then_some(value)
    }

    /// Keeps `value` as read for `key` now.
    pub fn put(&self, key: &str, value: V) {
        let now = (self.now)();
        let mut entries = self.entries();
        if entries.len() >= self.capacity && !entries.contains_key(key) {
            entries.retain(|_, (at, _)| now - *at < self.lifetime_ms);
            if entries.len() >= self.capacity {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key.to_owned(), (now, value));
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, (i64, V)>> {
        // A panic while holding it leaves a consistent map.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    static NOW: AtomicI64 = AtomicI64::new(0);

    fn now() -> i64 {
        NOW.load(Ordering::SeqCst)
    }

    #[test]
    fn a_changed_value_is_read_again_once_the_lifetime_passed_and_the_size_is_bounded() {
        let cache = Expiring::with_clock(2, Duration::from_secs(30), now);
        NOW.store(1_000, Ordering::SeqCst);
        cache.put("posting-1", vec!["old-tag"]);
        NOW.store(30_999, Ordering::SeqCst);
        assert_eq!(cache.get("posting-1"), Some(vec!["old-tag"]));
        // The customer fixed the tag; after the lifetime the cache no longer answers, so the
        // next event reads the posting again.
        NOW.store(31_000, Ordering::SeqCst);
        assert_eq!(cache.get("posting-1"), None);
        cache.put("posting-1", vec!["new-tag"]);
        assert_eq!(cache.get("posting-1"), Some(vec!["new-tag"]));
        NOW.store(32_000, Ordering::SeqCst);
        cache.put("posting-2", vec![]);
        cache.put("posting-3", vec![]);
        assert_eq!(cache.get("posting-1"), None, "the oldest went");
        assert!(cache.get("posting-2").is_some() && cache.get("posting-3").is_some());
        // Taken: used once.
        assert_eq!(cache.take("posting-2"), Some(vec![]));
        assert_eq!(cache.take("posting-2"), None);
        NOW.store(62_000, Ordering::SeqCst);
        assert_eq!(cache.take("posting-3"), None, "past its lifetime");
    }
}
