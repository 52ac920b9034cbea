//! `switchyard-soak`: steady load through the whole flow for a long time, with retention short
//! enough to act during the run; prints figures (not pass/fail) at the start, middle and end.
//! Signed Lever webhooks → Certn (its simulator calls back until Complete), with Gem → Certn and
//! Lever → Canditech beside it, all on loopback in this process (`scripts/soak.sh`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use switchyard_sim::canditech::CanditechOptions;
use switchyard_sim::certn::CertnOptions;
use switchyard_sim::lever::NewOpportunity;
use switchyard_testkit::{
    CanditechSetup, GemSetup, Stack, StackOptions, CANDITECH, CANDITECH_STAGE, CERTN, GEM,
    PYTHON_POSTING, TRIGGER,
};

#[derive(Parser)]
#[command(
    name = "switchyard-soak",
    about = "Steady load for a long time; figures, not pass/fail"
)]
struct Cli {
    /// Directory holding the built connector components.
    #[arg(long, default_value = "plugins/target/wasm32-wasip2/release")]
    connectors: PathBuf,
    /// Stop after this many Lever → Certn webhooks…
    #[arg(long, default_value_t = 100_000)]
    webhooks: u64,
    /// …or after this many minutes, whichever comes first.
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// Lever → Certn webhooks per second (Gem and Canditech each get a tenth of that).
    #[arg(long, default_value_t = 60)]
    rate: u64,
    /// `storage.retention_days`, in seconds (short, so that passes prune during the run).
    #[arg(long, default_value_t = 120)]
    retention_secs: u64,
    /// `storage.retention_interval_secs`.
    #[arg(long, default_value_t = 20)]
    interval_secs: u64,
}

/// Acknowledged webhooks and their latencies since the last sample.
#[derive(Default)]
struct Window {
    acks: u64,
    failed: u64,
    micros: Vec<u64>,
}

struct Sample {
    at: f64,
    acks_per_s: f64,
    p99_ms: f64,
    events_per_s: f64,
    rss_mib: f64,
    db_mib: f64,
    state_bytes: Vec<(String, u64)>,
    fds: usize,
    failed: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let data = std::env::temp_dir().join(format!("switchyard-soak-{}", std::process::id()));
    let mut opts = StackOptions::new(&cli.connectors, &data);
    let step = Some(Duration::from_millis(100));
    opts.certn = CertnOptions {
        step_delay: step,
        ..CertnOptions::default()
    };
    opts.gem = Some(GemSetup::default());
    opts.canditech = Some(CanditechSetup::new(CanditechOptions {
        step_delay: step,
        ..CanditechOptions::default()
    }));
    opts.storage.retention_days = cli.retention_secs as f64 / 86_400.0;
    opts.storage.retention_interval_secs = cli.interval_secs;
    let stack = Arc::new(Stack::start(opts).await?);
    let gem_key = stack.gem_issue_key()?.key;
    let ct = stack.canditech.as_ref().context("the Canditech customer")?;
    let python = ct.lever.add_posting(PYTHON_POSTING, &["Engineering"]);
    let ct_stage = ct.lever.stage_id(CANDITECH_STAGE).context("stage")?;
    println!(
        "soak: {} webhooks or {} min at {}/s; retention {} s, a pass every {} s; data in {}",
        cli.webhooks,
        cli.minutes,
        cli.rate,
        cli.retention_secs,
        cli.interval_secs,
        data.display()
    );

    let window = Arc::new(Mutex::new(Window::default()));
    let sent = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let deadline = Instant::now() + Duration::from_secs_f64(cli.minutes * 60.0);
    let started = Instant::now();
    let samples_every = Duration::from_secs_f64((cli.minutes * 60.0 / 20.0).max(5.0));
    let mut samples: Vec<Sample> = Vec::new();
    let mut last_sample = (Instant::now(), processed(&stack));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / cli.rate.max(1) as f64));
    let mut n: u64 = 0;
    while n < cli.webhooks && Instant::now() < deadline {
        tick.tick().await;
        n += 1;
        let permit = in_flight.clone().acquire_owned().await?;
        let (stack2, window2, sent2) = (stack.clone(), window.clone(), sent.clone());
        let (gem_key, python, ct_stage) = (gem_key.clone(), python.clone(), ct_stage.clone());
        tokio::spawn(async move {
            let (stack, window, sent) = (stack2, window2, sent2);
            let _permit = permit;
            let opp = stack.candidate(&format!("Soak {n}"), Some("soak@example.com"), &[], None);
            let t = Instant::now();
            let ok = matches!(stack.move_to(&opp, TRIGGER).await, Ok(200));
            record(&window, ok, t);
            sent.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(10) {
                side_load(&stack, n, &gem_key, &python, &ct_stage).await;
            }
        });
        if last_sample.0.elapsed() >= samples_every {
            samples.push(sample(&stack, &window, &mut last_sample, started).await);
            print_row(samples.last().context("a sample")?);
        }
    }
    samples.push(sample(&stack, &window, &mut last_sample, started).await);
    print_row(samples.last().context("a sample")?);
    print_summary(&samples, sent.load(Ordering::Relaxed));
    let _ = std::fs::remove_dir_all(&data);
    std::process::exit(0)
}

/// A Gem send and a Canditech move beside every tenth Lever → Certn webhook.
async fn side_load(stack: &Stack, n: u64, gem_key: &str, python: &str, ct_stage: &str) {
    if let Ok(gem) = stack.gem() {
        let body = serde_json::json!({
            "application_id": format!("gem-app-{n}"),
            "candidate": {"name": format!("Gem {n}"), "emails": ["gem@example.com"], "phones": []},
            "package": "Basic",
        });
        let key = format!("soak-{n}");
        let _ = gem
            .sim
            .send_check(&stack.host_url(), GEM, gem_key, &body, Some(&key))
            .await;
    }
    if let Some(ct) = &stack.canditech {
        let opp = ct.lever.add_opportunity(NewOpportunity {
            name: format!("Canditech {n}"),
            emails: vec!["ct@example.com".into()],
            posting_id: Some(python.to_string()),
            ..NewOpportunity::default()
        });
        let _ = ct.lever.move_to_stage(&opp, ct_stage).await;
    }
}

fn record(window: &Mutex<Window>, ok: bool, started: Instant) {
    let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
    if ok {
        w.acks += 1;
        w.micros.push(started.elapsed().as_micros() as u64);
    } else {
        w.failed += 1;
    }
}

/// Events finished so far: those still stored as done or skipped plus those pruned, read from
/// the host's metrics (accepted webhooks minus what is still queued or running).
fn processed(stack: &Stack) -> u64 {
    let app = &stack.host().app;
    let text = app.metrics.render(app.store.queue_depth().ok());
    let sum = |prefix: &str, must: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix) && l.contains(must))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let accepted = sum("switchyard_webhooks_total", "outcome=\"accepted\"");
    let depth = sum("switchyard_queue_depth", "");
    (accepted - depth).max(0.0) as u64
}

async fn sample(
    stack: &Stack,
    window: &Mutex<Window>,
    last: &mut (Instant, u64),
    started: Instant,
) -> Sample {
    let w = std::mem::take(&mut *window.lock().unwrap_or_else(|e| e.into_inner()));
    let secs = last.0.elapsed().as_secs_f64().max(1e-3);
    let done = processed(stack);
    let events_per_s = done.saturating_sub(last.1) as f64 / secs;
    *last = (Instant::now(), done);
    let mut micros = w.micros;
    micros.sort_unstable();
    let p99 = micros
        .get((micros.len() * 99 / 100).min(micros.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    let app = &stack.host().app;
    let state_bytes = [(CERTN, "certn"), (GEM, "certn"), (CANDITECH, "canditech")]
        .iter()
        .map(|(i, c)| (i.to_string(), app.store.kv_usage(i, c, "").unwrap_or(0)))
        .collect();
    Sample {
        at: started.elapsed().as_secs_f64(),
        acks_per_s: w.acks as f64 / secs,
        p99_ms: p99 as f64 / 1000.0,
        events_per_s,
        rss_mib: rss_kib() as f64 / 1024.0,
        db_mib: app.store.disk_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
        state_bytes,
        fds: std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0),
        failed: w.failed,
    }
}

/// Resident set of this process (host and simulators), from /proc.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn print_row(s: &Sample) {
    let state: Vec<String> = s
        .state_bytes
        .iter()
        .map(|(i, b)| format!("{i}={b}"))
        .collect();
    println!(
        "{:>7.0}s  acks/s {:>6.1}  p99 {:>7.1} ms  events/s {:>6.1}  RSS {:>6.1} MiB  db {:>6.1} MiB  fds {:>4}  failed {:>3}  state {}",
        s.at, s.acks_per_s, s.p99_ms, s.events_per_s, s.rss_mib, s.db_mib, s.fds, s.failed,
        state.join(" ")
    );
}

fn print_summary(samples: &[Sample], sent: u64) {
    // The first sample includes the warm-up; "start" is the second when there is one.
    let start = samples.get(1).or(samples.first());
    let (Some(start), Some(middle), Some(end)) =
        (start, samples.get(samples.len() / 2), samples.last())
    else {
        return;
    };
    println!("\n{sent} Lever → Certn webhooks sent\n");
    println!("| figure | start | middle | end | end / middle |");
    println!("| --- | --- | --- | --- | --- |");
    let row = |name: &str, f: &dyn Fn(&Sample) -> f64| {
        let (a, b, c) = (f(start), f(middle), f(end));
        let ratio = if b == 0.0 { 0.0 } else { c / b };
        println!("| {name} | {a:.1} | {b:.1} | {c:.1} | {ratio:.2} |");
    };
    row("acks/s", &|s| s.acks_per_s);
    row("p99 ack latency (ms)", &|s| s.p99_ms);
    row("events/s", &|s| s.events_per_s);
    row("RSS (MiB)", &|s| s.rss_mib);
    row("database on disk (MiB)", &|s| s.db_mib);
    row("open fds", &|s| s.fds as f64);
    for (i, (name, _)) in end.state_bytes.iter().enumerate() {
        row(&format!("state bytes {name}"), &|s| {
            s.state_bytes.get(i).map(|(_, b)| *b as f64).unwrap_or(0.0)
        });
    }
}
