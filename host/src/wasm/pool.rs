//! Where guest code runs, with bounded concurrency — at most `max_concurrent_calls` calls at
//! once and `max_calls_per_integration` per integration, shared by both places:
//! - [`GuestPool::run`]: a dedicated tokio runtime (`runtime.limits.guest_threads` threads named
//!   `switchyard-guest`), for calls made while an HTTP request waits (vendor callbacks, Gem
//!   package lists). One integration never takes the whole pool: its calls are at most
//!   `max_concurrent_calls - 1`, and the runtime has at least one thread more than it may run
//!   calls ([`SandboxLimits::effective_calls_per_integration`],
//!   [`SandboxLimits::effective_guest_threads`]), so a neighbour's callback finds a slot and a
//!   thread while one integration's calls all loop.
//! - [`GuestPool::run_here`]: on the caller's task, for a worker's `start-screening` (the
//!   workers' runtime, `worker.threads`, niced below HTTP): no hop to another thread per event.
//!   There the per-integration slots bound the calls, not the threads: while one integration's
//!   calls loop, a neighbour's event shares the workers' threads with them and gets its turn at
//!   every epoch tick (10 ms), so it is slowed, not stopped, and its own deadline keeps running.
//!
//! Never on the threads that serve HTTP: `/healthz`, intake and the admin API are untouched by a
//! spinning guest.
//!
//! A call waits up to `call_queue_ms` for a slot and then fails as [`Busy`] (a callback answers
//! 503 with `Retry-After`, an event is retried later).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::limits::SandboxLimits;

/// No slot freed up in time, or the pool is gone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Busy {
    #[error("all {0} connector call slots of this integration are busy")]
    Integration(usize),
    #[error("all {0} connector call slots of the host are busy")]
    Host(usize),
    #[error("the connector call was lost: {0}")]
    Lost(String),
}

/// The guest runtime and its slots.
pub struct GuestPool {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    total: Arc<Semaphore>,
    per_integration: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Calls one integration may run at once (the effective limit).
    calls_per_integration: usize,
    limits: SandboxLimits,
}

impl GuestPool {
    /// The guest runtime and slots for `limits`, with their effective per-integration bounds.
    pub fn new(limits: &SandboxLimits) -> std::io::Result<GuestPool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.effective_guest_threads())
            .thread_name("switchyard-guest")
            .enable_all()
            .build()?;
        Ok(GuestPool {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            total: Arc::new(Semaphore::new(limits.max_concurrent_calls.max(1))),
            per_integration: Mutex::new(HashMap::new()),
            calls_per_integration: limits.effective_calls_per_integration(),
            limits: limits.clone(),
        })
    }

    fn slots_of(&self, integration: &str) -> Arc<Semaphore> {
        self.per_integration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(integration.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.calls_per_integration)))
            .clone()
    }

    /// Runs `call` (a connector call, imports included) on the guest runtime for `integration`.
    /// The caller only awaits its end; if the caller goes away the call still finishes.
    pub async fn run<F>(&self, integration: &str, call: F) -> Result<F::Output, Busy>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let slots = self.slots(integration).await?;
        self.handle
            .spawn(async move {
                let _slots = slots;
                call.await
            })
            .await
            .map_err(|e| Busy::Lost(e.to_string()))
    }

    /// [`GuestPool::run`] on the caller's own task, within the same slots: for callers that
    /// already run apart from the threads that serve HTTP (the workers' runtime), where the hop
    /// to a guest thread and back cost two thread switches per call and bought no isolation.
    /// The sandbox's bounds (fuel, epoch deadline, memory) hold on any thread. Dropping the
    /// future cancels the call, as a crash would.
    pub async fn run_here<F: Future>(&self, integration: &str, call: F) -> Result<F::Output, Busy> {
        let _slots = self.slots(integration).await?;
        Ok(call.await)
    }

    /// A slot of `integration` and one of the host, each waited for up to `call_queue_ms`.
    async fn slots(
        &self,
        integration: &str,
    ) -> Result<(OwnedSemaphorePermit, OwnedSemaphorePermit), Busy> {
        let wait = Duration::from_millis(self.limits.call_queue_ms);
        let mine = tokio::time::timeout(wait, self.slots_of(integration).acquire_owned())
            .await
            .map_err(|_| Busy::Integration(self.calls_per_integration))?
            .map_err(|e| Busy::Lost(e.to_string()))?;
        let host = tokio::time::timeout(wait, self.total.clone().acquire_owned())
            .await
            .map_err(|_| Busy::Host(self.limits.max_concurrent_calls))?
            .map_err(|e| Busy::Lost(e.to_string()))?;
        Ok((mine, host))
    }
}

impl Drop for GuestPool {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is forbidden inside another runtime: let it go.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_run_on_guest_threads_within_their_slots() {
        let limits = SandboxLimits {
            max_calls_per_integration: 1,
            call_queue_ms: 200,
            ..SandboxLimits::default()
        };
        let pool = Arc::new(GuestPool::new(&limits).unwrap());
        let name = pool
            .run("a", async {
                std::thread::current().name().map(str::to_string)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("switchyard-guest"));
        // One slot for "a": a second call waits, then gives up as busy; "b" is unaffected.
        let p = pool.clone();
        let long = tokio::spawn(async move {
            p.run("a", tokio::time::sleep(Duration::from_millis(1500)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = pool.run("a", async {}).await;
        assert!(matches!(busy, Err(Busy::Integration(1))), "{busy:?}");
        assert!(pool.run("b", async {}).await.is_ok());
        assert!(long.await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn a_call_run_here_stays_on_the_callers_thread_within_the_same_slots() {
        let limits = SandboxLimits {
            max_calls_per_integration: 1,
            call_queue_ms: 100,
            ..SandboxLimits::default()
        };
        let pool = Arc::new(GuestPool::new(&limits).unwrap());
        let caller = std::thread::current().id();
        let here = pool
            .run_here("a", async { std::thread::current().id() })
            .await
            .unwrap();
        assert_eq!(here, caller);
        // `a`'s one slot is taken by a call on the guest threads: a call here waits, then
        // gives up as busy, like any other call of `a`.
        let p = pool.clone();
        let long = tokio::spawn(async move {
            p.run("a", tokio::time::sleep(Duration::from_millis(1000)))
                .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let busy = pool.run_here("a", async {}).await;
        assert!(matches!(busy, Err(Busy::Integration(1))), "{busy:?}");
        assert!(long.await.unwrap().is_ok());
        assert!(
            pool.run_here("a", async {}).await.is_ok(),
            "its slot is free again"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_integrations_looping_calls_leave_a_thread_for_a_neighbour() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        // The soak's setting: 2 threads, 4 calls per integration.
        let limits = SandboxLimits {
            guest_threads: 2,
            max_calls_per_integration: 4,
            call_queue_ms: 60_000,
            ..SandboxLimits::default()
        };
        let pool = Arc::new(GuestPool::new(&limits).unwrap());
        let (running, released) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        // Four calls of `a` that hold their thread (no yield to the executor) until `b` has run,
        // or give up after a minute.
        let loops: Vec<_> = (0..4)
            .map(|_| {
                let (pool, running, released) = (pool.clone(), running.clone(), released.clone());
                tokio::spawn(async move {
                    pool.run("a", async move {
                        running.fetch_add(1, Ordering::SeqCst);
                        let give_up = std::time::Instant::now() + Duration::from_secs(60);
                        while !released.load(Ordering::SeqCst)
                            && std::time::Instant::now() < give_up
                        {
                            std::thread::yield_now();
                        }
                        released.load(Ordering::SeqCst)
                    })
                    .await
                })
            })
            .collect();
        while running.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let flag = released.clone();
        pool.run("b", async move { flag.store(true, Ordering::SeqCst) })
            .await
            .unwrap();
        for l in loops {
            assert!(
                l.await.unwrap().unwrap(),
                "`b` ran while `a`'s calls held their threads"
            );
        }
        assert_eq!(
            running.load(Ordering::SeqCst),
            4,
            "all four calls of `a` ran"
        );
    }
}
