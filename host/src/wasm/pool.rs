//! Where guest code runs: a dedicated tokio runtime (`runtime.limits.guest_threads` threads named
//! `switchyard-guest`), never the threads that serve HTTP, with bounded concurrency — at most
//! `max_concurrent_calls` calls at once and `max_calls_per_integration` per integration. A spinning
//! guest therefore delays only other guest calls, and (because guests yield to the executor on
//! every epoch tick) not even those for long; `/healthz`, intake and the admin API are untouched.
//!
//! A call waits up to `call_queue_ms` for a slot and then fails as [`Busy`] (a callback answers
//! 503 with `Retry-After`, an event is retried later).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

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
    limits: SandboxLimits,
}

impl GuestPool {
    pub fn new(limits: &SandboxLimits) -> std::io::Result<GuestPool> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.guest_threads.max(1))
            .thread_name("switchyard-guest")
            .enable_all()
            .build()?;
        Ok(GuestPool {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
            total: Arc::new(Semaphore::new(limits.max_concurrent_calls.max(1))),
            per_integration: Mutex::new(HashMap::new()),
            limits: limits.clone(),
        })
    }

    fn slots_of(&self, integration: &str) -> Arc<Semaphore> {
        self.per_integration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(integration.to_string())
            .or_insert_with(|| {
                Arc::new(Semaphore::new(self.limits.max_calls_per_integration.max(1)))
            })
            .clone()
    }

    /// Runs `call` (a connector call, imports included) on the guest runtime for `integration`.
    /// The caller only awaits its end; if the caller goes away the call still finishes.
    pub async fn run<F>(&self, integration: &str, call: F) -> Result<F::Output, Busy>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let wait = Duration::from_millis(self.limits.call_queue_ms);
        let mine = tokio::time::timeout(wait, self.slots_of(integration).acquire_owned())
            .await
            .map_err(|_| Busy::Integration(self.limits.max_calls_per_integration))?
            .map_err(|e| Busy::Lost(e.to_string()))?;
        let host = tokio::time::timeout(wait, self.total.clone().acquire_owned())
            .await
            .map_err(|_| Busy::Host(self.limits.max_concurrent_calls))?
            .map_err(|e| Busy::Lost(e.to_string()))?;
        self.handle
            .spawn(async move {
                let _slots = (mine, host);
                call.await
            })
            .await
            .map_err(|e| Busy::Lost(e.to_string()))
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
}
