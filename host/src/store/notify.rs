//! Wake-ups across hosts on PostgreSQL: a commit that queued events sends `NOTIFY
//! switchyard_events` ([`Store::notify_queued`]), and every host's one dedicated LISTEN
//! connection ([`Store::listen`]) turns it into a wake-up of its idle workers. A hint only: the
//! workers' idle poll (`flow::worker`, every second at most) stays the fallback, so a lost
//! NOTIFY (the LISTEN connection down, or `storage.poll_only` where LISTEN is not available)
//! only delays an event by that poll.
//!
//! Throttled: a host sends at most one NOTIFY per [`THROTTLE_MS`] (in the background, on a
//! pooled connection: never on the intake's path). The LISTEN connection is opened again after
//! a loss, with a backoff, and wakes the workers once connected (events may have been queued
//! while it was down). SQLite is one process per file: the in-process wake-up is enough.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::{now_ms, Backend, Store};

/// The channel hosts notify and listen on.
pub const CHANNEL: &str = "switchyard_events";
/// At most one NOTIFY per this many milliseconds per host.
pub const THROTTLE_MS: i64 = 5;
/// Longest wait between two attempts to open the LISTEN connection again.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

impl Store {
    /// Tells every host listening that events were queued (after their commit); throttled.
    /// Nothing on SQLite.
    pub(in crate::store) fn notify_queued(&self) {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return;
        };
        let now = now_ms();
        let last = pg.last_notify.load(Ordering::Relaxed);
        if now - last < THROTTLE_MS
            || pg
                .last_notify
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let pool = pg.pool();
        pg.spawn(async move {
            let sent = match pool.get().await {
                Ok(conn) => conn
                    .batch_execute(&format!("NOTIFY {CHANNEL}"))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                tracing::debug!(error = %e, "NOTIFY not sent: other hosts find the events by polling");
            }
        });
    }

    /// Listens for wake-ups on a connection of its own: one message per notification (coalesced
    /// while the receiver is behind), and one each time the connection is (re)opened. `None`
    /// on SQLite. Stops when the receiver is dropped.
    pub fn listen(&self) -> Option<mpsc::Receiver<()>> {
        let Backend::Postgres { pg, .. } = &self.backend else {
            return None;
        };
        let (tx, rx) = mpsc::channel(1);
        pg.spawn(listen_loop(pg.config(), tx));
        Some(rx)
    }
}

/// Keeps a LISTEN connection open until `tx`'s receiver is gone, reconnecting with a backoff;
/// a loss and a recovery are logged once each.
async fn listen_loop(config: tokio_postgres::Config, tx: mpsc::Sender<()>) {
    let mut backoff = Duration::from_millis(100);
    let mut lost = false;
    loop {
        let ended = listen_once(&config, &tx, &mut lost).await;
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

/// One LISTEN connection, forwarding its notifications until it ends or nobody listens.
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &mpsc::Sender<()>,
    lost: &mut bool,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (seen, mut notified) = mpsc::unbounded_channel();
    // The connection must be polled for the client's statements and for its notifications.
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(_) = message {
                if seen.send(()).is_err() {
                    break;
                }
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
    let _ = tx.try_send(());
    loop {
        tokio::select! {
            message = notified.recv() => match message {
                // Full: a wake-up is pending already, which covers this one.
                Some(()) => { let _ = tx.try_send(()); }
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
