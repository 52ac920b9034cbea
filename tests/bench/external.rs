//! Figures of the real binary: `switchyard serve --config <file>` as a child process, driven by
//! the external load generator over loopback HTTP, against the simulators in this process.
//!
//! Three connectors are loaded: `certn` (Lever → Certn), `justifacts` (a second customer's Lever
//! → Justifacts, idle here) and `misbehave` on the intake integration. Intake webhooks go to the
//! intake integration at a stage that is not its trigger, so each stored event is later skipped
//! after one stage lookup: acknowledging needs no simulator. Processing webhooks go to the Certn
//! integration at its trigger stage, for real candidates: each event reads the opportunity from
//! the Lever simulator, invites at the Certn simulator (which answers at once; applications do
//! not progress, so no callbacks) and writes the status back to Lever.
//!
//! The latency rows run twice: alone, then with [`QUEUED_BEHIND`] events queued behind a third
//! integration whose ATS is down ([`DOWN`]: its Lever API base is a closed port), queued through
//! the intake first, so the dispatcher, its claims and the retries see them.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use switchyard_sim::justifacts::JustifactsOptions;
use switchyard_testkit::{Stack, StackOptions, CERTN, TRIGGER};
use switchyard_tests::lever_of;
use switchyard_tests::serve::{cpu_secs, cpu_us_per, rss_mib, serve, write_config, written_bytes};

use super::loadgen::{drive, fsync_latency, sqlite_ceiling, Drive, Load, RssSampler};
use super::snapshot::{metric, Snapshot};
use super::table::Row;
use super::threads;
use switchyard_tests::support_admin::connectors_dir;

const INTAKE: &str = "bench-intake";
/// The intake integration's trigger; its webhooks go to [`INTAKE_STAGE`] instead.
const INTAKE_TRIGGER: &str = "Fast Stage";
const INTAKE_STAGE: &str = "Offer";
/// Webhooks per closed-loop intake run (`SWITCHYARD_BENCH_INTAKE_REQUESTS` overrides it: a
/// longer run to attach `perf` or `strace` to).
const INTAKE_REQUESTS: usize = 20_000;
/// Bound on one closed-loop intake run (a slow host sends fewer than [`INTAKE_REQUESTS`]).
const CLOSED_SECS: u32 = 20;
const INTAKE_CONNECTIONS: [usize; 2] = [16, MAIN_CONNECTIONS];
/// The main intake row's connections (its host CPU per ack gets a row of its own).
const MAIN_CONNECTIONS: usize = 64;
/// Offered rates of the open-loop latency runs, each for [`OPEN_SECS`].
const OPEN_RATES: [u32; 2] = [2_000, 5_000];
const OPEN_SECS: u32 = 5;
const OPEN_CONNECTIONS: usize = 64;
/// An integration whose ATS is down (a copy of [`INTAKE`] with its Lever API on a closed port).
const DOWN: &str = "bench-down";
/// Events queued behind [`DOWN`] before the second latency runs.
const QUEUED_BEHIND: usize = 50_000;
/// Candidates moved to the Certn integration's trigger stage
/// (`SWITCHYARD_BENCH_PROCESS_EVENTS` overrides it: a longer run to attach `perf` to).
const PROCESS_EVENTS: usize = 2_000;
/// Bound on waiting for the processing run's events.
const PROCESS_WAIT: Duration = Duration::from_secs(240);
/// Bound on waiting for an intake run's backlog before the next run.
const BACKLOG_WAIT: Duration = Duration::from_secs(60);

/// Which phases of [`run`] run.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Phases {
    /// Every phase.
    All,
    /// Start-up and processing (a profile of processing alone).
    Processing,
    /// Start-up, processing and the closed-loop intake rows, without the latency runs (a profile
    /// or an A/B of intake; `SWITCHYARD_BENCH_PROCESS_EVENTS` shortens the processing run).
    Intake,
}

/// Runs `phases` against one served host and appends their rows.
pub async fn run(rows: &mut Vec<Row>, phases: Phases) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("switchyard-bench-serve-")
        .tempdir()?;
    let data = tmp.path().to_path_buf();
    let connectors = connectors_dir(&data, &["certn", "justifacts", "misbehave"]);
    let mut opts = StackOptions::new(&connectors, &data);
    opts.justifacts = Some(JustifactsOptions::default());
    opts.extra = vec![(INTAKE.into(), "misbehave".into(), INTAKE_TRIGGER.into())];
    opts.certn.step_delay = None;
    let mut stack = Stack::prepare(opts).await?;
    let down = down_integration(integration(&stack, INTAKE)?)?;
    stack.config.integrations.push(down);
    let config = write_config(&stack.config, &data);
    let db = stack.config.storage.path.clone();
    let db_dir = db.parent().context("database directory")?.to_path_buf();

    // Start-up: cold (compiles 3 connectors), then a restart from the compiled-code cache.
    let t = Instant::now();
    let host = serve(&config, stack.addr).await;
    let cold = t.elapsed();
    host.stop().await;
    let t = Instant::now();
    let host = serve(&config, stack.addr).await;
    let warm = t.elapsed();
    rows.push(Row::against(
        "start-up: restart from code cache (vs cold), 3 connectors",
        (warm.as_secs_f64(), format!("{warm:.2?}")),
        (cold.as_secs_f64(), format!("cold {cold:.2?}")),
        "-",
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (idle_rss, _) = rss_mib(host.pid());
    let sampler = RssSampler::start(host.pid());

    // Processing: PROCESS_EVENTS candidates moved to Certn's trigger stage at once.
    let process_events = match std::env::var("SWITCHYARD_BENCH_PROCESS_EVENTS") {
        Ok(n) => n
            .trim()
            .parse()
            .context("SWITCHYARD_BENCH_PROCESS_EVENTS: a number of events")?,
        Err(_) => PROCESS_EVENTS,
    };
    let opps = stack.candidates(process_events, "Bench", "bench");
    let opps_file = data.join("opportunities.txt");
    std::fs::write(&opps_file, opps.join("\n"))?;
    let certn = integration(&stack, CERTN)?;
    let trigger = stack.lever.stage_id(TRIGGER).context("trigger stage")?;
    let (host_cpu, own_cpu) = (cpu_secs(host.pid()), cpu_secs(0));
    let commits = metric(stack.addr, "switchyard_store_commits_total").await;
    let writes = metric(stack.addr, "switchyard_store_batched_writes_total").await;
    let threads_before = threads::by_name(host.pid());
    let outcomes_before = outcomes(stack.addr).await;
    let started = Instant::now();
    let sent = drive(
        &Drive {
            url: format!("http://{}/hooks/{CERTN}/lever", stack.addr),
            signature_token: lever_of(certn).signature_token.expose(),
            stage: &trigger,
            opportunities: Some(&opps_file),
            connections: 16,
        },
        Load::Closed {
            requests: process_events,
            max_secs: 120,
        },
    )
    .await?;
    let finished = drain(&db, CERTN, PROCESS_WAIT).await?;
    let took = started.elapsed();
    let done = finished.get("done").copied().unwrap_or(0);
    rows.push(Row::plain(
        format!("processed events/s, instant vendor ({process_events} moves)"),
        format!(
            "{:.0}/s ({done} done, {} other: {finished:?}; {} webhooks not 200)",
            done as f64 / took.as_secs_f64(),
            process_events as u64 - done,
            failures(&sent)
        ),
        ">= 2,000/s",
    ));
    // What bounds it: CPU per event on a machine of `cores` CPUs, the host's and the
    // simulators' (this process: Lever reads and write-backs, Certn invitations).
    let per_event = |before: Option<f64>, after: Option<f64>| {
        before
            .zip(after)
            .map_or(0.0, |(b, a)| (a - b) * 1000.0 / done.max(1) as f64)
    };
    let host_ms = per_event(host_cpu, cpu_secs(host.pid()));
    let sims_ms = per_event(own_cpu, cpu_secs(0));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let threads_after = threads::by_name(host.pid());
    let commits = metric(stack.addr, "switchyard_store_commits_total").await - commits;
    let writes = metric(stack.addr, "switchyard_store_batched_writes_total").await - writes;
    rows.push(Row::plain(
        "processed: CPU ms per event, host / simulators (bench process)",
        format!(
            "{host_ms:.2} / {sims_ms:.2} ms → at most {:.0}/s on {cores} cores",
            cores * 1000.0 / (host_ms + sims_ms).max(1e-9),
        ),
        "-",
    ));
    rows.push(Row::plain(
        "host CPU per event (processing, instant vendor)",
        format!("{host_ms:.2} ms"),
        "<= 0.5 ms",
    ));
    rows.push(Row::plain(
        "group commits per event (incl. the webhook's)",
        format!("{:.2}", commits / done.max(1) as f64),
        "-",
    ));
    // What the commits carry, and where the host's CPU and wake-ups go (incl. the webhook's).
    rows.push(Row::plain(
        "processed: store writes per event, context switches per event",
        format!(
            "{:.2} writes, {:.1} cs",
            writes / done.max(1) as f64,
            threads::switches(&threads_after).saturating_sub(threads::switches(&threads_before))
                as f64
                / done.max(1) as f64
        ),
        "-",
    ));
    // How workers wrote their finished attempts: in their next claim's write, or alone (why).
    let outcomes_after = outcomes(stack.addr).await;
    let outcomes: Vec<String> = OUTCOMES_WITH
        .iter()
        .zip(outcomes_before.iter().zip(&outcomes_after))
        .map(|(with, (b, a))| format!("{with} {:.2}", (a - b) / done.max(1) as f64))
        .collect();
    rows.push(Row::plain(
        "processed: outcomes per event, with the next claim / alone (why)",
        outcomes.join(", "),
        "-",
    ));
    rows.push(Row::plain(
        "processed: host CPU ms / context switches per event by thread",
        threads::per_unit(&threads_before, &threads_after, done),
        "-",
    ));
    if phases == Phases::Processing {
        drop(sampler);
        host.stop().await;
        return Ok(());
    }

    // The disk's ceiling, measured now, beside the host's database.
    let ceiling = sqlite_ceiling(&db_dir).await?;
    let batched = ceiling["batched_rows_per_s"].as_f64().unwrap_or_default();
    let single = ceiling["single_rows_per_s"].as_f64().unwrap_or_default();
    rows.push(Row::plain(
        "SQLite ceiling, same disk: rows/s in 50-row commits",
        format!("{batched:.0}/s"),
        "-",
    ));
    rows.push(Row::plain(
        "SQLite ceiling, same disk: rows/s, 1 row per commit",
        format!("{single:.0}/s"),
        "-",
    ));

    // Intake: closed loop at each connection count, then open loop at fixed rates.
    let intake = integration(&stack, INTAKE)?;
    let token = lever_of(intake).signature_token.expose();
    let stage = stack.lever.stage_id(INTAKE_STAGE).context("intake stage")?;
    let to_intake = |connections| Drive {
        url: format!("http://{}/hooks/{INTAKE}/lever", stack.addr),
        signature_token: token,
        stage: &stage,
        opportunities: None,
        connections,
    };
    let mut skipped = Vec::new();
    let mut per_ack = 0.0;
    // A value that is not a count is refused, not silently replaced by the default.
    let requests = match std::env::var("SWITCHYARD_BENCH_INTAKE_REQUESTS") {
        Ok(n) => n
            .trim()
            .parse()
            .context("SWITCHYARD_BENCH_INTAKE_REQUESTS: a number of webhooks")?,
        Err(_) => INTAKE_REQUESTS,
    };
    let closed_secs = CLOSED_SECS * (requests / INTAKE_REQUESTS).max(1) as u32;
    for connections in INTAKE_CONNECTIONS {
        let cpu = cpu_secs(host.pid());
        let written = written_bytes(host.pid());
        let commits = metric(stack.addr, "switchyard_store_commits_total").await;
        let frames = metric(stack.addr, "switchyard_store_wal_frames_total").await;
        let threads_before = threads::by_name(host.pid());
        let r = drive(
            &to_intake(connections),
            Load::Closed {
                requests,
                max_secs: closed_secs,
            },
        )
        .await?;
        let threads_after = threads::by_name(host.pid());
        let commits = metric(stack.addr, "switchyard_store_commits_total").await - commits;
        let frames = metric(stack.addr, "switchyard_store_wal_frames_total").await - frames;
        let acked = r["acked_per_s"].as_f64().unwrap_or_default();
        let ok = r["ok"].as_f64().unwrap_or_default();
        let cpu_us = cpu_us_per(cpu, host.pid(), ok);
        // WAL frames and checkpoints (the database file), processing's writes included.
        let kib_per_ack = written
            .zip(written_bytes(host.pid()))
            .map_or(0.0, |(b, a)| (a - b) as f64 / 1024.0 / ok.max(1.0));
        rows.push(Row::against(
            format!("acked webhooks/s, external loadgen, {connections} connections"),
            (
                acked,
                format!(
                    "{acked:.0}/s (p50 {}, p99 {}; {} not 200, {} unsent; host CPU {cpu_us:.0} µs \
                     per ack, processing included; {:.1} acks per group commit; \
                     {kib_per_ack:.1} KiB written per ack, {:.2} WAL frames per ack, \
                     {:.1} per commit)",
                    ms(&r, "p50"),
                    ms(&r, "p99"),
                    failures(&r),
                    r["unsent"],
                    ok / commits.max(1.0),
                    frames / ok.max(1.0),
                    frames / commits.max(1.0)
                ),
            ),
            (batched, format!("{batched:.0}/s")),
            ">= 20,000/s",
        ));
        rows.push(Row::plain(
            format!(
                "… {connections} connections: host CPU µs / context switches per ack by thread"
            ),
            threads::per_unit_us(&threads_before, &threads_after, ok),
            "-",
        ));
        if connections == MAIN_CONNECTIONS {
            per_ack = cpu_us;
        }
        skipped.push(timed_drain(&db, INTAKE).await?);
    }
    rows.push(Row::plain(
        format!("host CPU per ack, {MAIN_CONNECTIONS} connections (processing included)"),
        format!("{per_ack:.1} µs"),
        "<= 20 µs",
    ));
    if phases == Phases::Intake {
        drop(sampler);
        host.stop().await;
        return Ok(());
    }
    // The disk's floor under the latency rows, measured beside them (the host idle).
    rows.push(fsync_row(
        &fsync_latency(&db_dir).await?,
        "before the latency runs",
    ));
    for rate in OPEN_RATES {
        let before = Snapshot::take(stack.addr, host.pid()).await;
        let r = open_loop(&to_intake(OPEN_CONNECTIONS), rate).await?;
        let after = Snapshot::take(stack.addr, host.pid()).await;
        rows.push(latency_row(&r, rate, ""));
        rows.push(latency_figures(rate, "", before.per_ack(&after, ok(&r))));
        skipped.push(timed_drain(&db, INTAKE).await?);
    }
    // The same with a backlog behind an integration whose ATS is down.
    let down = lever_of(integration(&stack, DOWN)?)
        .signature_token
        .expose();
    let backlog = drive(
        &Drive {
            url: format!("http://{}/hooks/{DOWN}/lever", stack.addr),
            signature_token: down,
            ..to_intake(MAIN_CONNECTIONS)
        },
        Load::Closed {
            requests: QUEUED_BEHIND,
            max_secs: 60,
        },
    )
    .await?;
    rows.push(fsync_row(
        &fsync_latency(&db_dir).await?,
        "before the backlog's latency runs",
    ));
    for rate in OPEN_RATES {
        let waiting = states(&db, DOWN)?;
        let behind = ["queued", "running"]
            .iter()
            .filter_map(|s| waiting.get(*s))
            .sum::<u64>();
        let before = Snapshot::take(stack.addr, host.pid()).await;
        let r = open_loop(&to_intake(OPEN_CONNECTIONS), rate).await?;
        let after = Snapshot::take(stack.addr, host.pid()).await;
        rows.push(latency_row(
            &r,
            rate,
            &format!(
                ", {behind} events queued behind a down ATS ({} of {QUEUED_BEHIND} acked)",
                backlog["ok"]
            ),
        ));
        let figures = before.per_ack(&after, ok(&r));
        rows.push(latency_figures(
            rate,
            ", backlog behind a down ATS",
            figures,
        ));
        skipped.push(timed_drain(&db, INTAKE).await?);
    }
    let (n, secs) = skipped
        .iter()
        .fold((0, 0.0), |(n, s), (m, d, _)| (n + m, s + d.as_secs_f64()));
    let left: Vec<u64> = skipped.iter().map(|(_, _, pending)| *pending).collect();
    rows.push(Row::plain(
        "backlog after intake runs: skipped events/s",
        format!(
            "{:.0}/s ({n} events; left pending after each run's {}s wait: {left:?})",
            n as f64 / secs.max(1e-9),
            BACKLOG_WAIT.as_secs()
        ),
        "-",
    ));

    let (_, peak) = rss_mib(host.pid());
    let under_load = sampler.max_mib();
    rows.push(Row::plain(
        "RSS idle, 3 connectors loaded",
        format!("{idle_rss:.1} MiB"),
        "-",
    ));
    rows.push(Row::against(
        "RSS under load (largest VmRSS; vs idle)",
        (
            under_load,
            format!("{under_load:.1} MiB (VmHWM {peak:.1} MiB)"),
        ),
        (idle_rss, format!("idle {idle_rss:.1} MiB")),
        "<= 150 MB",
    ));
    drop(sampler);
    host.stop().await;
    Ok(())
}

/// A copy of `intake` as [`DOWN`]: its Lever API base a loopback port nobody listens on, so
/// each of its events fails to reach the ATS and is retried later (the breaker opening too).
fn down_integration(
    intake: &switchyard::config::IntegrationConfig,
) -> anyhow::Result<switchyard::config::IntegrationConfig> {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let mut down = intake.clone();
    down.id = DOWN.into();
    if let switchyard::ats::AtsConfig::Lever(lever) = &mut down.ats {
        lever.api_base = format!("http://{closed}/v1");
    }
    Ok(down)
}

/// An open-loop run at `rate`/s for [`OPEN_SECS`].
async fn open_loop(to: &Drive<'_>, rate: u32) -> anyhow::Result<Value> {
    drive(
        to,
        Load::Open {
            rate,
            secs: OPEN_SECS,
        },
    )
    .await
}

/// The row of an open-loop run at `rate`/s; `with` says what else the host holds.
fn latency_row(r: &Value, rate: u32, with: &str) -> Row {
    Row::plain(
        format!("ack latency at {rate}/s offered, {OPEN_CONNECTIONS} connections{with}"),
        format!(
            "p50 {}, p90 {}, p99 {}, max {} (achieved {:.0}/s; {} not 200, {} unsent; \
             p99 by second {})",
            ms(r, "p50"),
            ms(r, "p90"),
            ms(r, "p99"),
            ms(r, "max"),
            r["achieved_per_s"].as_f64().unwrap_or_default(),
            failures(r),
            r["unsent"],
            by_second(r)
        ),
        if rate == 5_000 {
            "p99 <= 5 ms"
        } else {
            "p99 <= 2 ms"
        },
    )
}

/// The disk's write + `fdatasync` latency (`switchyard-loadgen fsync`), measured `when`.
fn fsync_row(r: &Value, when: &str) -> Row {
    let share = |field: &str| r[field].as_f64().unwrap_or_default() * 100.0;
    Row::plain(
        format!("disk: write + fdatasync, database's directory, {when}"),
        format!(
            "p50 {}, p90 {}, p99 {}, max {}; {:.1} % over 2 ms, {:.1} % over 5 ms ({} syncs)",
            ms(r, "p50"),
            ms(r, "p90"),
            ms(r, "p99"),
            ms(r, "max"),
            share("share_over_2ms"),
            share("share_over_5ms"),
            r["syncs"]
        ),
        "bounds the p99 rows",
    )
}

/// What the host did per ack in the open-loop run at `rate`/s (`figures`, from
/// [`Snapshot::per_ack`]); `with` says what else the host holds.
fn latency_figures(rate: u32, with: &str, figures: String) -> Row {
    Row::plain(format!("… at {rate}/s{with}: per ack"), figures, "-")
}

/// Webhooks a drive report says were answered 200.
fn ok(report: &Value) -> f64 {
    report["ok"].as_f64().unwrap_or_default()
}

/// Integration `id` of the stack's config.
pub fn integration<'a>(
    stack: &'a Stack,
    id: &str,
) -> anyhow::Result<&'a switchyard::config::IntegrationConfig> {
    stack
        .config
        .integrations
        .iter()
        .find(|i| i.id == id)
        .with_context(|| format!("no integration {id}"))
}

/// A latency percentile of a drive report, in ms.
fn ms(report: &Value, field: &str) -> String {
    let us = report["latency_us"][field].as_f64().unwrap_or_default();
    format!("{:.2} ms", us / 1000.0)
}

/// The p99 of each second of an open-loop run, in ms: `[4.1, 2.0, …]`.
fn by_second(report: &Value) -> String {
    let seconds: Vec<String> = report["latency_us"]["p99_by_second"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|us| format!("{:.1}", us.as_f64().unwrap_or_default() / 1000.0))
                .collect()
        })
        .unwrap_or_default();
    format!("[{}]", seconds.join(", "))
}

/// Requests of a drive report not answered 200 (other statuses and connection errors).
pub fn failures(report: &Value) -> u64 {
    report["non_200"].as_u64().unwrap_or(0) + report["errors"].as_u64().unwrap_or(0)
}

/// Event counts of an integration by state, read from the host's database (read-only).
fn states(db: &Path, integration: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    use rusqlite::{Connection, OpenFlags};
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mut stmt =
        conn.prepare("SELECT state, COUNT(*) FROM events WHERE integration = ?1 GROUP BY state")?;
    let rows = stmt.query_map([integration], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, u64>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Waits (at most `within`) until no event of `integration` is queued or running; returns the
/// counts by state.
async fn drain(
    db: &Path,
    integration: &str,
    within: Duration,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let deadline = Instant::now() + within;
    loop {
        let counts = states(db, integration)?;
        let pending: u64 = ["queued", "running"]
            .iter()
            .filter_map(|s| counts.get(*s))
            .sum();
        if pending == 0 || Instant::now() > deadline {
            return Ok(counts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// [`drain`] within [`BACKLOG_WAIT`], returning how many events finished meanwhile, how long it
/// took and how many were still pending.
async fn timed_drain(db: &Path, integration: &str) -> anyhow::Result<(u64, Duration, u64)> {
    let finished = |c: &BTreeMap<String, u64>| -> u64 {
        c.iter()
            .filter(|(s, _)| !matches!(s.as_str(), "queued" | "running"))
            .map(|(_, n)| n)
            .sum()
    };
    let before = finished(&states(db, integration)?);
    let t = Instant::now();
    let counts = drain(db, integration, BACKLOG_WAIT).await?;
    let pending = counts.values().sum::<u64>() - finished(&counts);
    Ok((finished(&counts) - before, t.elapsed(), pending))
}

/// The ways a worker's finished attempt is written (`switchyard_outcomes_recorded_total{with}`).
const OUTCOMES_WITH: [&str; 6] = ["claim", "ready", "no_room", "nothing", "error", "stopping"];

/// `switchyard_outcomes_recorded_total` for each of [`OUTCOMES_WITH`].
async fn outcomes(addr: std::net::SocketAddr) -> Vec<f64> {
    let mut counts = Vec::with_capacity(OUTCOMES_WITH.len());
    for with in OUTCOMES_WITH {
        let name = format!("switchyard_outcomes_recorded_total{{with=\"{with}\"}}");
        counts.push(metric(addr, &name).await);
    }
    counts
}
