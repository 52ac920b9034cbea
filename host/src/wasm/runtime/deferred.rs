//! The server's `state` for a `start-screening` call: writes are held in memory and committed
//! either before the call's next outbound request or, after its last one, with the call's
//! outcome (the caller takes them, [`DeferredState::take`], into the write that records the
//! order: one commit instead of one per `state` call).
//!
//! Intent-before-call stays: [`StateBackend::before_outbound`] commits every held write before a
//! request leaves, so what a connector recorded before inviting (its `intent:`) is durable
//! before the vendor hears of it, and a crash during or after the request cannot duplicate an
//! invitation. What is written after the last request (the `order:` it got, the intent's
//! removal) is lost in a crash before the outcome commits, exactly as the outcome is: the next
//! attempt finds the intent and looks the order up at the vendor instead of inviting again.
//!
//! Reads see the held writes (read-your-writes within the call); the quota check counts them.
//!
//! A key read from the store is read once per stretch of the call between two outbound
//! requests ([`Held::read`]): Certn reads `order:<key>` twice in a row (its own check, then the
//! SDK's `start_once`), one PostgreSQL round trip each. What the call read is forgotten when a
//! request leaves ([`StateBackend::before_outbound`]) and once [`FRESH_FOR`] has passed: other
//! calls commit while this one waits, and a request is how a connector waits (for the vendor,
//! which may itself have heard from another call); the bound covers the other ways a call can
//! let time pass (a WASI sleep, a long computation). So a read returns what the store held at
//! the stretch's first read of the key, at most [`FRESH_FOR`] before (`docs/connectors.md`).
//!
//! The quota check reads the store once per call, not once per write ([`Stored`]): the call's
//! first read of the store also answers the connector's stored total, each read answers its
//! key's stored size, and the call's own commits are added to what it read. What other calls
//! (other workers, other hosts) commit meanwhile is seen by the next call. The check never was
//! a lock: another call's writes held in memory were never counted either, and were committed
//! any time before that call ended, so calls running together could always pass the quota by
//! what they write together; reading at the call's start instead of at each write keeps that
//! bound (what concurrent calls write), on every backend.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::store::kv::{KvEntry, KvWrite};
use crate::store::Store;
use crate::wasm::runtime::imports::{BoxFuture, StateBackend};

/// How long a value read from the store answers the call's later reads of its key, within one
/// stretch between outbound requests. Certn's two reads of one key are microseconds apart.
const FRESH_FOR: Duration = Duration::from_millis(100);

/// A connector's `state` for one call, scoped to one integration and connector, its writes
/// held until an outbound request or the call's outcome.
pub struct DeferredState {
    store: Store,
    integration: String,
    connector: String,
    held: Mutex<Held>,
    /// [`FRESH_FOR`], but in tests.
    fresh_for: Duration,
}

#[derive(Default)]
struct Held {
    /// Writes not committed yet, in order.
    writes: Vec<KvWrite>,
    /// What the store holds, as far as this call knows; `None` until first read.
    stored: Option<Stored>,
    /// Values read from the store since the call's last outbound request (or its start), by
    /// key (`None`: no entry), with when each read was sent.
    read: HashMap<String, (Option<String>, Instant)>,
}

impl Held {
    /// Notes what a read of `key` sent at `sent` answered: its value for the stretch, its
    /// stored size (and the total, if asked for) for the quota.
    fn note(&mut self, key: &str, entry: KvEntry, sent: Instant) {
        if let Some(stored) = self.stored.as_mut() {
            stored.bytes.insert(key.to_owned(), entry.bytes);
        } else if let Some(total) = entry.total {
            let bytes = HashMap::from([(key.to_owned(), entry.bytes)]);
            self.stored = Some(Stored { total, bytes });
        }
        self.read.insert(key.to_owned(), (entry.value, sent));
    }
}

/// The keys of a `start-screening` call's `state` read ahead with the screening's recorded
/// order ([`Store::order_for_key_with_state`]): the idempotency pattern's (`docs/connectors.md`,
/// the SDK's `start_once`) reads both before anything else. Any other key is read when asked.
pub fn keys_read_ahead(idempotency_key: &str) -> Vec<String> {
    vec![
        format!("order:{idempotency_key}"),
        format!("intent:{idempotency_key}"),
    ]
}

/// The connector's committed state as this call read it, with the call's own commits applied.
struct Stored {
    /// Bytes the connector keeps in all.
    total: u64,
    /// Bytes each key's stored entry counts (0: none), for the keys read or committed.
    bytes: HashMap<String, u64>,
}

impl DeferredState {
    /// `state` of `connector` for `integration`, nothing held.
    pub fn new(store: Store, integration: &str, connector: &str) -> Arc<DeferredState> {
        Self::fresh_for(store, integration, connector, FRESH_FOR)
    }

    fn fresh_for(
        store: Store,
        integration: &str,
        connector: &str,
        fresh_for: Duration,
    ) -> Arc<DeferredState> {
        Arc::new(DeferredState {
            store,
            integration: integration.to_owned(),
            connector: connector.to_owned(),
            held: Mutex::new(Held::default()),
            fresh_for,
        })
    }

    /// The writes held since the last outbound request, in order, for the caller to commit
    /// with the call's outcome ([`Store::record_status_with_state`]).
    pub fn take(&self) -> Vec<KvWrite> {
        std::mem::take(&mut self.held().writes)
    }

    /// Holds `writes` (taken by [`DeferredState::take`]) again, ahead of any held since: their
    /// outcome could not be recorded, so a [`DeferredState::flush`] must still store them.
    pub fn hold_again(&self, writes: Vec<KvWrite>) {
        let mut held = self.held();
        let later = std::mem::replace(&mut held.writes, writes);
        held.writes.extend(later);
    }

    /// Commits the writes held (one write of the group commit); durable when it returns. For a
    /// call whose outcome is not recorded (it failed): what it wrote still stands.
    pub fn flush(&self) -> crate::store::Result<()> {
        let writes = self.take();
        let kept = writes.clone();
        self.store
            .kv_apply(&self.integration, &self.connector, writes)
            // Not stored: held again, so a later flush still has them.
            .inspect_err(|_| self.hold_again(kept))
    }

    fn held(&self) -> MutexGuard<'_, Held> {
        // A panic while pushing leaves a consistent state.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self, write: KvWrite) {
        self.held().writes.push(write);
    }

    /// Reads `key` from the store (with the connector's total on the call's first read), and
    /// notes its stored size for the quota.
    fn read(&self, key: &str) -> anyhow::Result<Option<String>> {
        let first = self.held().stored.is_none();
        let sent = Instant::now();
        let entry = self
            .store
            .kv_get_counted(&self.integration, &self.connector, key, first)?;
        let value = entry.value.clone();
        self.held().note(key, entry, sent);
        Ok(value)
    }

    /// Takes `entries` of `keys` ([`keys_read_ahead`]), read from the store with the
    /// screening's recorded order just before the call (the read sent at `sent`), as the call's
    /// first reads of them: the connector's first `get`s cost no round trip of their own.
    pub fn read_ahead(&self, keys: &[String], entries: Vec<KvEntry>, sent: Instant) {
        let mut held = self.held();
        for (key, entry) in keys.iter().zip(entries) {
            held.note(key, entry, sent);
        }
    }

    /// Applies `writes`, just committed with `changed` rows each, to what the call knows of the
    /// store; a key whose stored size it did not know makes it read the store again.
    fn committed(&self, writes: &[KvWrite], changed: &[u64]) {
        let mut held = self.held();
        let Some(stored) = held.stored.as_mut() else {
            return;
        };
        for (write, &changed) in writes.iter().zip(changed) {
            if changed == 0 {
                // Nothing stored changed: a screening's entry not kept, a delete of nothing.
                if matches!(write, KvWrite::Delete { .. }) {
                    stored.bytes.insert(write.key().to_owned(), 0);
                }
                continue;
            }
            let Some(before) = stored.bytes.get(write.key()).copied() else {
                held.stored = None;
                return;
            };
            let after = held_bytes(write);
            stored.total = (stored.total + after).saturating_sub(before);
            stored.bytes.insert(write.key().to_owned(), after);
        }
    }
}

/// Bytes of a held entry as the quota counts them (key, value, the screening's key).
fn held_bytes(write: &KvWrite) -> u64 {
    match write {
        KvWrite::Set { key, value } => (key.len() + value.len()) as u64,
        KvWrite::SetForScreening {
            screening,
            key,
            value,
        } => (key.len() + value.len() + screening.len()) as u64,
        KvWrite::Delete { .. } => 0,
    }
}

impl StateBackend for DeferredState {
    /// The newest held write of `key`, else the value read in this stretch (see the module
    /// documentation), else the store's.
    fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        {
            let held = self.held();
            match held.writes.iter().rev().find(|w| w.key() == key) {
                Some(KvWrite::Set { value, .. } | KvWrite::SetForScreening { value, .. }) => {
                    return Ok(Some(value.clone()))
                }
                Some(KvWrite::Delete { .. }) => return Ok(None),
                None => {}
            }
            if let Some((value, sent)) = held.read.get(key) {
                if sent.elapsed() < self.fresh_for {
                    return Ok(value.clone());
                }
            }
        }
        self.read(key)
    }

    fn set(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.hold(KvWrite::Set {
            key: key.to_owned(),
            value: value.to_owned(),
        });
        Ok(())
    }

    fn set_for_screening(
        &self,
        idempotency_key: &str,
        key: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        self.hold(KvWrite::SetForScreening {
            screening: idempotency_key.to_owned(),
            key: key.to_owned(),
            value: value.to_owned(),
        });
        Ok(())
    }

    fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.hold(KvWrite::Delete {
            key: key.to_owned(),
        });
        Ok(())
    }

    /// The stored total plus every held entry's bytes (the newest per key, `key` left out): an
    /// entry held over a stored one counts twice until committed, so the check errs on the side
    /// of the quota. The stored figures are the call's ([`Stored`]): read from the store only
    /// when the call has not read the total or `key`'s stored size yet.
    fn usage_without(&self, key: &str) -> anyhow::Result<u64> {
        let known = |held: &Held| {
            held.stored
                .as_ref()
                .is_some_and(|s| s.bytes.contains_key(key))
        };
        if !known(&self.held()) {
            self.read(key)?;
        }
        let held = self.held();
        let stored = match &held.stored {
            Some(s) => s
                .total
                .saturating_sub(s.bytes.get(key).copied().unwrap_or(0)),
            // Read just now; only a concurrent reset (never within one call) leaves none.
            None => self
                .store
                .kv_usage(&self.integration, &self.connector, key)?,
        };
        let mut seen: Vec<&str> = vec![key];
        let mut extra = 0;
        for write in held.writes.iter().rev() {
            if !seen.contains(&write.key()) {
                seen.push(write.key());
                extra += held_bytes(write);
            }
        }
        Ok(stored + extra)
    }

    /// Awaits the group commit of the held writes: no thread blocks for it (a blocking wait
    /// lent the runtime's thread away, `block_in_place`, at the cost of thread switches per
    /// request). Ends the stretch: what the call read is read again after the request.
    fn before_outbound(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            self.held().read.clear();
            let writes = self.take();
            let kept = writes.clone();
            let changed = self
                .store
                .kv_apply_committed(&self.integration, &self.connector, writes)
                .await
                // Not stored: held again, so a later flush still has them.
                .inspect_err(|_| self.hold_again(kept.clone()))?;
            self.committed(&kept, &changed);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::on_both_async;
    use crate::wasm::runtime::imports::{
        CallContext, HttpError, HttpResponse, Outbound, OutgoingRequest,
    };

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::TempDir::new().unwrap();
        let store = Store::open(&dir.path().join("db.sqlite")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn writes_are_held_until_a_request_leaves_and_read_back_meanwhile() {
        let (_dir, store) = store();
        let state = DeferredState::new(store.clone(), "i", "c");
        state.set_for_screening("key", "intent:key", "1").unwrap();
        assert_eq!(state.get("intent:key").unwrap().as_deref(), Some("1"));
        assert_eq!(store.kv_get("i", "c", "intent:key").unwrap(), None);
        // Before the vendor is called, the intent is durable.
        state.before_outbound().await.unwrap();
        assert_eq!(
            store.kv_get("i", "c", "intent:key").unwrap().as_deref(),
            Some("1")
        );
        // After the last request: held, and read back as the connector left it.
        state.set_for_screening("key", "order:key", "o-1").unwrap();
        state.delete("intent:key").unwrap();
        assert_eq!(state.get("intent:key").unwrap(), None);
        assert_eq!(state.get("order:key").unwrap().as_deref(), Some("o-1"));
        assert!(store.kv_get("i", "c", "intent:key").unwrap().is_some());
        let held = state.take();
        assert_eq!(held.len(), 2);
        assert!(state.take().is_empty(), "taken once");
    }

    #[test]
    fn a_flush_commits_what_a_failed_call_wrote() {
        let (_dir, store) = store();
        let state = DeferredState::new(store.clone(), "i", "c");
        state.set("cursor", "7").unwrap();
        state.flush().unwrap();
        assert_eq!(
            store.kv_get("i", "c", "cursor").unwrap().as_deref(),
            Some("7")
        );
    }

    /// The quota's stored figures are read once per call: a write committed by someone else
    /// after the call's first read is counted by the next call, not by this one's checks. The
    /// call's own commits are counted as they change the store (a replaced entry once).
    #[tokio::test]
    async fn the_quota_reads_the_store_once_per_call_and_counts_its_own_commits() {
        let (_dir, store) = store();
        store.kv_set("i", "c", "old", "zzz").unwrap(); // 6 bytes
        store.kv_set("i", "c", "gone", "z").unwrap(); // 5 bytes
        let state = DeferredState::new(store.clone(), "i", "c");
        assert_eq!(state.get("old").unwrap().as_deref(), Some("zzz"));
        store.kv_set("i", "c", "other", "0123456789").unwrap(); // 15 bytes, another call's
        assert_eq!(
            state.usage_without("new").unwrap(),
            11,
            "read at the call's start"
        );
        // Replaced and committed before a request: counted once, at its new size.
        state.set("old", "z").unwrap();
        state.before_outbound().await.unwrap();
        assert_eq!(state.usage_without("new").unwrap(), 4 + 5);
        // A key the call never read, deleted: the next check reads the store again.
        state.delete("gone").unwrap();
        state.before_outbound().await.unwrap();
        assert_eq!(state.usage_without("new").unwrap(), 4 + 15);
        // Another call reads what is stored now.
        let next = DeferredState::new(store.clone(), "i", "c");
        assert_eq!(next.usage_without("new").unwrap(), 4 + 15);
    }

    /// "Another call": writes `shared` = `v2` while this call's request is out.
    struct WritesDuringTheRequest(Store);
    impl Outbound for WritesDuringTheRequest {
        fn send(
            &self,
            _: OutgoingRequest,
            _: Duration,
        ) -> BoxFuture<'_, Result<HttpResponse, HttpError>> {
            Box::pin(async move {
                self.0.kv_set("i", "c", "shared", "v2").unwrap();
                Ok(HttpResponse {
                    status: 200,
                    ..HttpResponse::default()
                })
            })
        }
    }

    /// A key is read from the store once per stretch between outbound requests; another call's
    /// change of a key shared by calls, made while this call's request was out, is what the
    /// call reads after the request (a0609bb answered it from the call's first read).
    #[tokio::test(flavor = "multi_thread")]
    async fn a_read_after_an_outbound_request_sees_what_another_call_changed() {
        on_both_async!(|store: Store| async move {
            store.kv_set("i", "c", "shared", "v1").unwrap();
            let state = DeferredState::new(store.clone(), "i", "c");
            let mut ctx = CallContext::detached();
            ctx.state = Some(state.clone());
            ctx.http = Arc::new(WritesDuringTheRequest(store.clone()));
            ctx.allowed_hosts = vec!["vendor.example".into()];
            assert_eq!(ctx.state_get("shared").unwrap().as_deref(), Some("v1"));
            // Another call's write within the stretch: the call's next read is its first's,
            // not read from the store again.
            store.kv_set("i", "c", "shared", "v1b").unwrap();
            let trips = store.writer_stats().round_trips;
            assert_eq!(ctx.state_get("shared").unwrap().as_deref(), Some("v1"));
            assert_eq!(store.writer_stats().round_trips, trips);
            let request = OutgoingRequest {
                method: "GET".into(),
                url: "https://vendor.example/orders".into(),
                headers: vec![],
                body: vec![],
                timeout_ms: None,
            };
            assert_eq!(ctx.send(request).await.unwrap().status, 200);
            assert_eq!(ctx.state_get("shared").unwrap().as_deref(), Some("v2"));
        });
    }

    /// The idempotency pattern's keys, read with the screening's recorded order before the
    /// call, answer the call's first reads and its quota check: no round trip of their own.
    #[tokio::test(flavor = "multi_thread")]
    async fn state_read_ahead_with_the_order_answers_the_first_reads() {
        on_both_async!(|store: Store| async move {
            store
                .kv_set_for_screening("i", "c", "k", "intent:k", "1")
                .unwrap();
            let keys = keys_read_ahead("k");
            let sent = Instant::now();
            let (order, entries) = store
                .order_for_key_with_state("i", "c", "k", &keys)
                .unwrap();
            assert!(order.is_none());
            let state = DeferredState::new(store.clone(), "i", "c");
            state.read_ahead(&keys, entries, sent);
            let trips = store.writer_stats().round_trips;
            assert_eq!(state.get("order:k").unwrap(), None);
            assert_eq!(state.get("intent:k").unwrap().as_deref(), Some("1"));
            // "intent:k" + "1" + the screening's "k", as the SDK's write of "order:k" checks.
            assert_eq!(state.usage_without("order:k").unwrap(), 10);
            assert_eq!(store.writer_stats().round_trips, trips);
        });
    }

    /// A value read answers the call's reads only for a while: a call that lets time pass
    /// without a request (a WASI sleep) reads the store again (here at once: no freshness).
    #[test]
    fn a_read_value_answers_again_only_while_fresh() {
        let (_dir, store) = store();
        store.kv_set("i", "c", "shared", "v1").unwrap();
        let state = DeferredState::fresh_for(store.clone(), "i", "c", Duration::ZERO);
        assert_eq!(state.get("shared").unwrap().as_deref(), Some("v1"));
        store.kv_set("i", "c", "shared", "v2").unwrap();
        assert_eq!(state.get("shared").unwrap().as_deref(), Some("v2"));
    }

    #[test]
    fn the_quota_counts_held_entries_once_per_key() {
        let (_dir, store) = store();
        let state = DeferredState::new(store, "i", "c");
        state.set("a", "xx").unwrap();
        state.set("a", "yyyy").unwrap();
        state.set("b", "z").unwrap();
        // "a" (1 + 4) and "b" (1 + 1); the key being written is left out.
        assert_eq!(state.usage_without("c").unwrap(), 7);
        assert_eq!(state.usage_without("a").unwrap(), 2);
    }
}
