//! Runs the external load generator (`switchyard-loadgen`, a separate process) and samples the
//! served host's memory while it runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use switchyard_tests::serve::{binary, rss_mib};

/// Where and how a drive run sends.
pub struct Drive<'a> {
    pub url: String,
    pub signature_token: &'a str,
    pub stage: &'a str,
    pub opportunities: Option<&'a Path>,
    pub connections: usize,
}

/// How a drive run is paced.
pub enum Load {
    /// `requests` as fast as answered, for at most `max_secs`.
    Closed { requests: usize, max_secs: u32 },
    /// `rate`/s for `secs` (the generator stops 10 s after that).
    Open { rate: u32, secs: u32 },
}

/// Runs `switchyard-loadgen` with `args`; returns its JSON line (its human summary goes to our
/// stderr).
fn loadgen(args: &[String]) -> anyhow::Result<Value> {
    let out = Command::new(binary("switchyard-loadgen"))
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .context("run switchyard-loadgen")?;
    anyhow::ensure!(out.status.success(), "switchyard-loadgen {args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .last()
        .context("no report from the load generator")?;
    Ok(serde_json::from_str(line)?)
}

/// One drive run, on a blocking thread (the generator is a child process).
pub async fn drive(d: &Drive<'_>, load: Load) -> anyhow::Result<Value> {
    let mut args: Vec<String> = vec![
        "drive".into(),
        "--url".into(),
        d.url.clone(),
        "--signature-token".into(),
        d.signature_token.into(),
        "--stage".into(),
        d.stage.into(),
        "--connections".into(),
        d.connections.to_string(),
    ];
    if let Some(path) = d.opportunities {
        args.extend(["--opportunities".into(), path.display().to_string()]);
    }
    match load {
        Load::Closed { requests, max_secs } => args.extend([
            "--requests".into(),
            requests.to_string(),
            "--max-secs".into(),
            max_secs.to_string(),
        ]),
        Load::Open { rate, secs } => args.extend([
            "--rate".into(),
            rate.to_string(),
            "--duration".into(),
            secs.to_string(),
        ]),
    }
    tokio::task::spawn_blocking(move || loadgen(&args)).await?
}

/// The raw SQLite ceiling of the disk holding `dir`.
pub async fn sqlite_ceiling(dir: &Path) -> anyhow::Result<Value> {
    let args = vec![
        "sqlite-ceiling".into(),
        "--dir".into(),
        dir.display().to_string(),
    ];
    tokio::task::spawn_blocking(move || loadgen(&args)).await?
}

/// The write + `fdatasync` latency of the disk holding `dir` (a bounded loop: at most 2,000
/// flushes or 5 s).
pub async fn fsync_latency(dir: &Path) -> anyhow::Result<Value> {
    let args = vec!["fsync".into(), "--dir".into(), dir.display().to_string()];
    tokio::task::spawn_blocking(move || loadgen(&args)).await?
}

/// Samples a process's `VmRSS` every 50 ms until dropped; keeps the largest seen.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    max: Arc<Mutex<f64>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new(Mutex::new(0.0f64));
        let (s, m) = (stop.clone(), max.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (rss, _) = rss_mib(pid);
                if let Ok(mut m) = m.lock() {
                    *m = m.max(rss);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        RssSampler { stop, max }
    }

    /// The largest `VmRSS` seen so far, MiB.
    pub fn max_mib(&self) -> f64 {
        self.max.lock().map_or(0.0, |m| *m)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
