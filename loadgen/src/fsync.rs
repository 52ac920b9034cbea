//! The disk's own commit latency: a small write, then `fdatasync`, in a loop — what each of
//! SQLite's WAL commits with `synchronous=FULL` waits for (its frames written, the WAL synced).
//! No acknowledgement of the host can be faster than one such flush, and one that arrives while
//! another flush runs waits for that one too: the floor under the ack latency rows, measured on
//! the same disk in the same run.
//!
//! The file is first written to [`FILE_BYTES`] and synced (not timed), then overwritten in a
//! cycle, [`WRITE_BYTES`] a sync: a WAL that started over, as the host's does between
//! checkpoints (no size change, so no file-system metadata in the flush).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use crate::drive::rank;

/// Bytes per flush: four WAL frames (24-byte header + 4 KiB page), a small intake commit.
const WRITE_BYTES: usize = 4 * (24 + 4096);

/// The file's size, overwritten in a cycle.
const FILE_BYTES: u64 = 4 << 20;

/// Flushes (µs) over which the report gives the share: the ack latency targets.
const OVER_US: [u64; 2] = [2_000, 5_000];

/// Times at most `count` write + `fdatasync` rounds, for at most `max` (a disk that stalls
/// must not make the run last for ever), in a scratch file in `dir` (removed afterwards).
pub fn measure(dir: &Path, count: usize, max: Duration) -> anyhow::Result<Value> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("loadgen-fsync-{}", std::process::id()));
    let result = (|| {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let page = vec![0x5au8; WRITE_BYTES];
        let slots = FILE_BYTES / WRITE_BYTES as u64;
        for slot in 0..slots {
            file.write_all_at(&page, slot * WRITE_BYTES as u64)?;
        }
        file.sync_all()?;
        let mut samples = Vec::with_capacity(count.min(1 << 16));
        let started = Instant::now();
        for n in 0..count as u64 {
            if started.elapsed() > max {
                break;
            }
            let t = Instant::now();
            file.write_all_at(&page, (n % slots) * WRITE_BYTES as u64)?;
            file.sync_data()?;
            samples.push(t.elapsed().as_micros() as u64);
        }
        anyhow::Ok(report(samples, dir))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

/// Percentiles (µs) of `samples` and the share over each of [`OVER_US`].
fn report(mut samples: Vec<u64>, dir: &Path) -> Value {
    samples.sort_unstable();
    let n = samples.len();
    let pct = |p: f64| samples.get(rank(n, p)).copied().unwrap_or(0);
    let over = |us: u64| samples.iter().filter(|s| **s > us).count() as f64 / n.max(1) as f64;
    json!({
        "mode": "fsync",
        "dir": dir.display().to_string(),
        "bytes_per_sync": WRITE_BYTES,
        "syncs": n,
        "latency_us": {
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": samples.last().copied().unwrap_or(0),
        },
        "share_over_2ms": over(OVER_US[0]),
        "share_over_5ms": over(OVER_US[1]),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn times_each_flush_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("fsync");
        let report = super::measure(&dir, 20, Duration::from_secs(10)).unwrap();
        assert_eq!(report["syncs"], 20);
        let l = &report["latency_us"];
        assert!(l["p50"].as_u64().unwrap() <= l["p99"].as_u64().unwrap());
        assert!(l["p99"].as_u64().unwrap() <= l["max"].as_u64().unwrap());
        let share = report["share_over_2ms"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&share));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    }

    #[test]
    fn the_run_is_bounded_in_time() {
        let tmp = tempfile::tempdir().unwrap();
        let report = super::measure(tmp.path(), usize::MAX, Duration::ZERO).unwrap();
        assert!(report["syncs"].as_u64().unwrap() <= 1);
    }
}
