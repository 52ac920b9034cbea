//! Where the workers run: a tokio runtime of their own (`worker.threads` threads named
//! `switchyard-work`, plus its blocking threads), apart from the threads that serve
//! HTTP, at a lower CPU priority (`worker.nice`, Linux).
//!
//! Why: on a machine whose CPUs are all busy, processing (Lever reads and write-backs, JSON,
//! connector calls) competed with intake on equal terms, and acknowledging webhooks — the one
//! thing an ATS waits for — slowed to the pace of the queue behind it. With the workers niced the
//! scheduler serves intake first and the queue drains on what is left; an idle CPU is still used
//! by processing (a nice value orders who runs when both want a CPU, it reserves nothing). The
//! store's writer thread and the guest runtime keep the server's priority: both serve intake too
//! (commits, vendor callbacks).

use crate::config::WorkerConfig;

/// The workers' runtime; shut down (without waiting) when dropped.
pub struct WorkThreads {
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

impl WorkThreads {
    /// Starts `config.threads` threads (0 = one per CPU) at `config.nice` below the calling
    /// thread (capped at 19, the lowest priority).
    pub fn new(config: &WorkerConfig) -> std::io::Result<WorkThreads> {
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        // The target is fixed here, from the creating (server) thread: threads the runtime
        // starts later are created by its own, already lowered, threads and inherit their value.
        let nice = match config.nice {
            0 => None,
            by => Some((current_nice().unwrap_or(0) + by).min(19)),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("switchyard-work")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()?;
        Ok(WorkThreads {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }

    /// Where worker tasks are spawned.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for WorkThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is forbidden inside another runtime: let it go.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The calling thread's nice value (Linux: per thread), if it can be read.
pub fn current_nice() -> Option<i32> {
    #[cfg(target_os = "linux")]
    {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).ok()
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// Sets the calling thread's nice value to `target` (`None`: leaves it). Only Linux keeps a
/// nice value per thread; elsewhere this would renice the whole process, so it is not done.
fn lower_priority(target: Option<i32>) {
    let Some(target) = target else {
        return;
    };
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), target) {
            tracing::warn!(error = %e, nice = target, "cannot lower a worker thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = target;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(threads: usize, nice: i32) -> WorkerConfig {
        WorkerConfig {
            threads,
            nice,
            ..WorkerConfig::default()
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn worker_threads_run_below_the_server_priority() {
        let base = current_nice().unwrap();
        let threads = WorkThreads::new(&config(2, 7)).unwrap();
        let on_worker = std::sync::mpsc::channel();
        let tx = on_worker.0.clone();
        threads.handle().spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            // The blocking threads too (PostgreSQL's looks, orphan claims, hand-backs; claims
            // themselves are awaited on the worker's task).
            let blocking = tokio::task::spawn_blocking(current_nice).await.unwrap();
            let _ = tx.send((name, current_nice(), blocking));
        });
        let (name, nice, blocking) = on_worker.1.recv().unwrap();
        assert_eq!(name.as_deref(), Some("switchyard-work"));
        let want = (base + 7).min(19);
        assert_eq!((nice, blocking), (Some(want), Some(want)));
        // The caller's thread (the server's) is untouched.
        assert_eq!(current_nice(), Some(base));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn nice_zero_keeps_the_server_priority() {
        let base = current_nice().unwrap();
        let threads = WorkThreads::new(&config(1, 0)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        threads.handle().spawn(async move {
            let _ = tx.send(current_nice());
        });
        assert_eq!(rx.recv().unwrap(), Some(base));
    }
}
