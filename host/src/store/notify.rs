//! Wake-ups across hosts on PostgreSQL: a commit that queued events sends `NOTIFY
//! switchyard_events` ([`Store::notify_queued`]), and every host's one dedicated LISTEN
//! connection ([`Store::listen`]) turns it into a wake-up of its idle workers. A hint only: the
//! workers' idle poll (`flow::worker`, every second at most) stays the fallback, so a lost
//! NOTIFY (the LISTEN connection down, or `storage.poll_only` where LISTEN is not available)
//! only delays an event by that poll.
//!
//! Throttled: a host sends at most one NOTIFY per [`THROTTLE_MS`] (in the background, on a
//! pooled connection: never on the intake's path). A commit inside the window is not dropped: it
//! schedules one trailing NOTIFY at the window's end ([`Throttle`]), so the last events of a
//! burst wake other hosts too instead of waiting for their poll. Every path that makes events
//! due (intake, an operator's retry or resume, a replay, re-checks, events taken back from a
//! dead run or handed back by a stopping one) notifies. The LISTEN connection is opened again after
//! a loss, with a backoff, and wakes the workers once connected (events may have been queued
//! while it was down). SQLite is one process per file: the in-process wake-up is enough.
//!
//! A host hears its own NOTIFYs too. An intake commit already woke one of its workers in
//! process (the group commit's `Store::queued`), who claims for the others: its NOTIFY then
//! names the sending host ([`Throttle::token`]), whose listener drops it. A NOTIFY covering any
//! other commit (a retry, a take-back: nothing woke this host's workers for those) has no
//! payload and wakes every host, the sender too.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::queued_integrations::Looked;
use super::{now_ms, Backend, Store};

/// The channel hosts notify and listen on.
pub const CHANNEL: &str = "switchyard_events";
/// At most one NOTIFY per this many milliseconds per host.
pub const THROTTLE_MS: i64 = 5;
/// Longest wait between two attempts to open the LISTEN connection again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// When a host sends its next NOTIFY: at once, or once at the end of the throttle window.
#[derive(Debug)]
pub(in crate::store) struct Throttle {
    /// When the last NOTIFY was sent (unix ms).
    last: AtomicI64,
    /// A trailing NOTIFY is scheduled and not sent yet: it covers every commit until it is.
    trailing: AtomicBool,
    /// A commit since the last NOTIFY was sent needs this host's workers woken by it too.
    here_too: AtomicBool,
    /// This host's payload: a NOTIFY its own listener drops.
    token: String,
    /// NOTIFYs spawned whose round trip is not counted yet ([`Store::notifies_counted`]).
    uncounted: AtomicUsize,
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle {
            last: AtomicI64::default(),
            trailing: AtomicBool::default(),
            here_too: AtomicBool::default(),
            token: format!("{:016x}", rand::random::<u64>()),
            uncounted: AtomicUsize::default(),
        }
    }
}

/// What to do for a commit that queued events.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Now,
    /// Schedule the trailing NOTIFY in this many milliseconds.
    After(i64),
    /// A trailing NOTIFY is scheduled already, and it is sent after this commit.
    Covered,
}

impl Throttle {
    /// For a commit made before `now`: sent at once outside the window, else after it (once).
    fn offer(&self, now: i64) -> Next {
        let last = self.last.load(Ordering::SeqCst);
        if now - last >= THROTTLE_MS
            && self
                .last
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            return Next::Now;
        }
        // Within the window (or another commit sent at this instant, maybe before ours was
        // seen): one NOTIFY at the window's end covers this commit and those until then.
        if self.trailing.swap(true, Ordering::SeqCst) {
            return Next::Covered;
        }
        Next::After((last + THROTTLE_MS - now).clamp(0, THROTTLE_MS))
    }

    /// The trailing NOTIFY goes now: commits from here on need a NOTIFY of their own.
    fn trailing_due(&self, now: i64) {
        self.last.store(now, Ordering::SeqCst);
        self.trailing.store(false, Ordering::SeqCst);
    }

    /// The payload of a NOTIFY sent now, covering every commit offered before: empty (every
    /// host wakes) if one of them needs this host woken too, else this host's token. Taken at
    /// the send, after those commits: a commit offered later is covered by its own NOTIFY.
    fn payload(&self) -> &str {
        match self.here_too.swap(false, Ordering::SeqCst) {
            true => "",
            false => &self.token,
        }
    }
}

impl Store {
    /// Tells every host listening that events were queued or made due (after their commit);
    /// throttled, never dropped. Nothing on SQLite.
    pub(in crate::store) fn notify_queued(&self) {
        self.notify_hosts(true);
    }

    /// [`Store::notify_queued`] for an intake commit, whose batch woke one of this host's
    /// workers already: the NOTIFY may skip this host.
    pub(in crate::store) fn notify_intake(&self) {
        self.notify_hosts(false);
    }

    /// Tells other hosts, and this one if `here_too`, that events were queued or made due.
    fn notify_hosts(&self, here_too: bool) {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return;
        };
        pg.looked.changed();
        if here_too {
            pg.notify.here_too.store(true, Ordering::SeqCst);
        }
        let delay = match pg.notify.offer(now_ms()) {
            Next::Now => None,
            Next::After(ms) => Some(ms),
            Next::Covered => return,
        };
        let pool = pg.pool();
        let throttle = pg.notify.clone();
        let trips = pg.trips();
        throttle.uncounted.fetch_add(1, Ordering::SeqCst);
        pg.spawn(async move {
            if let Some(ms) = delay {
                tokio::time::sleep(Duration::from_millis(ms.unsigned_abs())).await;
                throttle.trailing_due(now_ms());
            }
            trips.fetch_add(1, Ordering::SeqCst);
            throttle.uncounted.fetch_sub(1, Ordering::SeqCst);
            let sent = match pool.get().await {
                Ok(conn) => conn
                    .batch_execute(&format!("NOTIFY {CHANNEL}, '{}'", throttle.payload()))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "NOTIFY not sent: other hosts find the events by polling");
            }
        });
    }

    /// Waits (up to 10 s) until every NOTIFY spawned so far has counted its round trip: a test
    /// that counts a write's round trips starts after those of the commits before it.
    #[cfg(test)]
    pub(in crate::store) async fn notifies_counted(&self) {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return;
        };
        for _ in 0..1_000 {
            if pg.notify.uncounted.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("a NOTIFY still uncounted after 10 s");
    }

    /// [`Store::notify_queued`] if `made_due`: after a commit that queued events again (a retry,
    /// a replay, a resume, a take-back), which idle workers of other hosts should not wait for
    /// their poll to find.
    pub(in crate::store) fn notify_due(&self, made_due: bool) {
        if made_due {
            self.notify_queued();
        }
    }

    /// Listens for wake-ups on a connection of its own: one message per notification (coalesced
    /// while the receiver is behind), and one each time the connection is (re)opened. `None`
    /// on SQLite. Stops when the receiver is dropped.
    pub fn listen(&self) -> Option<mpsc::Receiver<()>> {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return None;
        };
        let (tx, rx) = mpsc::channel(1);
        let own = pg.notify.token.clone();
        pg.spawn(listen_loop(pg.config(), tx, pg.looked.clone(), own));
        Some(rx)
    }
}

/// Keeps a LISTEN connection open until `tx`'s receiver is gone, reconnecting with a backoff;
/// a loss and a recovery are logged once each.
async fn listen_loop(
    config: tokio_postgres::Config,
    tx: mpsc::Sender<()>,
    looked: Arc<Looked>,
    own: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let ended = listen_once(&config, &tx, &looked, &own, &mut lost).await;
        if tx.is_closed() {
            return;
        }
        if !lost {
            let reason = ended
                .err()
                .map_or_else(|| "closed".into(), |e| e.to_string());
            tracing::warn!(error = %reason,
                "the LISTEN connection to PostgreSQL is lost: reconnecting, workers poll meanwhile");
            lost = true;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = tx.closed() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// One LISTEN connection, forwarding its notifications until it ends or nobody listens; each
/// one (and the connection's opening) first makes the last claim's list of queued integrations
/// stale ([`Looked`]): another host queued events. Those whose payload is `own` (this host's
/// intake, which woke its workers itself) are dropped.
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &mpsc::Sender<()>,
    looked: &Looked,
    own: &str,
    lost: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (seen, mut notified) = mpsc::unbounded_channel();
    // The connection must be polled for the client's statements and for its notifications.
    let own = own.to_owned();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            let AsyncMessage::Notification(heard) = message else {
                continue;
            };
            if heard.payload() != own && seen.send(()).is_err() {
                break;
            }
        }
    });
    let listening = client.batch_execute(&format!("LISTEN {CHANNEL}")).await;
    if let Err(e) = listening {
        driver.abort();
        return Err(e);
    }
    if std::mem::take(lost) {
        tracing::info!("listening for wake-ups from PostgreSQL again");
    }
    // Events may have been queued while nobody listened.
    looked.changed();
    let _ = tx.try_send(());
    loop {
        tokio::select! {
            message = notified.recv() => match message {
                // Full: a wake-up is pending already, which covers this one.
                Some(()) => {
                    looked.changed();
                    let _ = tx.try_send(());
                }
                None => break,
            },
            _ = tx.closed() => break,
        }
    }
    driver.abort();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing;
    use super::*;

    const WITHIN: Duration = Duration::from_secs(10);

    /// A commit inside the throttle window is never dropped: it gets one trailing NOTIFY at the
    /// window's end, which covers every commit until it is sent.
    #[test]
    fn a_burst_inside_the_window_gets_one_trailing_notify() {
        let t = Throttle::default();
        assert_eq!(t.offer(1_000), Next::Now);
        assert_eq!(t.offer(1_002), Next::After(3), "the burst's tail");
        assert_eq!(t.offer(1_003), Next::Covered, "by the scheduled one");
        t.trailing_due(1_005);
        assert_eq!(
            t.offer(1_006),
            Next::After(4),
            "after the trailing one went"
        );
        t.trailing_due(1_010);
        assert_eq!(t.offer(1_020), Next::Now);
    }

    /// Waits until nothing wakes `wakes` for a while (what earlier commits sent has arrived).
    async fn quiet(wakes: &mut mpsc::Receiver<()>) {
        while tokio::time::timeout(Duration::from_millis(300), wakes.recv())
            .await
            .is_ok()
        {}
    }

    /// An event made due again by an operator's retry on host a wakes idle host b, which has no
    /// poll of its own here (only NOTIFY reaches `listen`), and b claims it.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_event_retried_on_one_host_wakes_another_which_claims_it() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let mut wakes = b.listen().expect("a LISTEN connection on PostgreSQL");
        a.enqueue_batched("acme", "lever.stage_change", "lever:1", "{}")
            .await
            .unwrap();
        let e = a
            .claim(&crate::store::Claim::any("run-a", 60_000))
            .unwrap()
            .unwrap();
        let dead = crate::store::Finish {
            run: "run-a",
            claim_seq: e.claim_seq,
            state: crate::store::EventState::Dead,
            error: Some("vendor refused"),
            connector_version: None,
            retry_at: None,
            started_at_ms: now_ms(),
            took_ms: 1,
        };
        assert!(a.finish(e.id, &dead).await.unwrap());
        quiet(&mut wakes).await;

        assert_eq!(a.retry_event(e.id).unwrap(), crate::store::Retried::Queued);
        tokio::time::timeout(WITHIN, wakes.recv())
            .await
            .expect("host b is woken by host a's retry")
            .expect("still listening");
        let claimed = b
            .claim(&crate::store::Claim::any("run-b", 60_000))
            .unwrap()
            .expect("b claims the retried event");
        assert_eq!(claimed.id, e.id);
    }

    /// An intake commit woke one of its host's workers already: its NOTIFY wakes the other
    /// hosts, not its sender. A commit that woke nobody here (a plain enqueue, as a retry or a
    /// take-back) wakes every host, the sender too.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_intake_notify_wakes_the_other_hosts_not_its_sender() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let mut own = a.listen().expect("a LISTEN connection on PostgreSQL");
        let mut other = b.listen().expect("a LISTEN connection on PostgreSQL");
        for wakes in [&mut own, &mut other] {
            tokio::time::timeout(WITHIN, wakes.recv())
                .await
                .expect("woken once listening");
            quiet(wakes).await;
        }
        a.enqueue_batched("acme", "lever.stage_change", "lever:1", "{}")
            .await
            .unwrap();
        tokio::time::timeout(WITHIN, other.recv())
            .await
            .expect("host b is woken by host a's intake")
            .expect("still listening");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), own.recv())
                .await
                .is_err(),
            "host a's workers were woken by its batch, not by its NOTIFY"
        );
        a.enqueue("acme", "lever.stage_change", "lever:2", "{}")
            .unwrap();
        for wakes in [&mut own, &mut other] {
            tokio::time::timeout(WITHIN, wakes.recv())
                .await
                .expect("every host is woken")
                .expect("still listening");
        }
    }

    #[test]
    fn sqlite_has_no_listen_connection() {
        assert!(testing::sqlite().listen().is_none());
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_event_queued_on_one_host_wakes_another() {
        let url = testing::postgres_url();
        let a = Store::open_postgres(&url, None).unwrap();
        let b = Store::open_postgres(&url, None).unwrap();
        let mut wakes = b.listen().expect("a LISTEN connection on PostgreSQL");
        tokio::time::timeout(WITHIN, wakes.recv())
            .await
            .expect("woken once listening")
            .expect("listening");
        assert!(
            tokio::time::timeout(Duration::from_millis(300), wakes.recv())
                .await
                .is_err(),
            "nothing queued, no wake-up"
        );
        a.enqueue_batched("acme", "lever.stage_change", "lever:1", "{}")
            .await
            .unwrap();
        tokio::time::timeout(WITHIN, wakes.recv())
            .await
            .expect("host b is woken by host a's commit")
            .expect("still listening");
    }
}
