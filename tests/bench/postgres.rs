//! PostgreSQL rows beside SQLite's, from the same run: 1 and 3 `switchyard serve` processes on
//! one PostgreSQL database (the cluster `scripts/bench.sh` starts with `scripts/pg.sh`), behind
//! the test kit's loopback balancer ([`Cluster`]), driven by the same external load generator:
//! processed events/s (real candidates at Certn's trigger stage, instant vendor) and acked
//! webhooks/s with p99 (closed loop, 16 connections, events later skipped), each with the
//! hosts' CPU (summed over their processes) per processed event and per ack, and the statements
//! the database ran per event and per ack when `pg_stat_statements` is loaded on
//! the cluster (each statement's calls per unit and mean time on stderr with
//! `SWITCHYARD_BENCH_PG_STATEMENTS=1`), and the round trips the hosts counted (statements sent
//! together count once). `SWITCHYARD_BENCH_PG_HOSTS` (comma-separated, default
//! `1,3`) picks the host counts measured. Each database is fresh: the figures come after a
//! warm-up of [`WARM_UP_EVENTS`] moves and an analysis of the tables that grew
//! (`SWITCHYARD_BENCH_PG_WARM_UP`), the steady state of a database in use.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::store::{EventState, Store};
use switchyard_testkit::{Cluster, CERTN, TRIGGER};
use switchyard_tests::lever_of;
use switchyard_tests::serve::{binary, cpu_secs};
use switchyard_tests::support_admin::connectors_dir;

use super::external::{failures, integration};
use super::loadgen::{drive, Drive, Load};
use super::table::Row;

const INTAKE: &str = "bench-intake";
const INTAKE_TRIGGER: &str = "Fast Stage";
const INTAKE_STAGE: &str = "Offer";
/// Fewer than the SQLite rows' moves: three hosts per run, and the figure settles well before.
const PROCESS_EVENTS: usize = 1_000;
/// Moves processed before the figures, so the tables have rows and statistics of enough of
/// them that their plans look rows up by index (`store::statistics`); `SWITCHYARD_BENCH_PG_WARM_UP` sets another count (0: none,
/// the plans of a fresh database's empty tables).
const WARM_UP_EVENTS: usize = 1_000;
const INTAKE_REQUESTS: usize = 10_000;
const CONNECTIONS: usize = 16;
const WAIT: Duration = Duration::from_secs(240);

/// Appends the PostgreSQL rows for 1 and 3 hosts (or those `SWITCHYARD_BENCH_PG_HOSTS` names).
pub async fn run(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let hosts: Vec<usize> = match std::env::var("SWITCHYARD_BENCH_PG_HOSTS") {
        Ok(list) => list
            .split(',')
            .map(|n| {
                n.trim()
                    .parse()
                    .context("SWITCHYARD_BENCH_PG_HOSTS: host counts")
            })
            .collect::<anyhow::Result<_>>()?,
        Err(_) => vec![1, 3],
    };
    for hosts in hosts {
        one(rows, hosts)
            .await
            .with_context(|| format!("PostgreSQL, {hosts} host(s)"))?;
    }
    Ok(())
}

async fn one(rows: &mut Vec<Row>, hosts: usize) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new().prefix("sy-bench-pg-").tempdir()?;
    let connectors = connectors_dir(dir.path(), &["certn", "misbehave"]);
    let cluster = Cluster::start(&binary("switchyard"), &connectors, hosts, |o| {
        o.extra = vec![(INTAKE.into(), "misbehave".into(), INTAKE_TRIGGER.into())];
        o.certn.step_delay = None;
    })
    .await?;
    let stack = &cluster.stack;
    let store = Store::open_postgres(&cluster.database, None)?;
    let label = if hosts == 1 {
        "PostgreSQL, 1 host".to_string()
    } else {
        format!("PostgreSQL, {hosts} hosts behind the loopback balancer")
    };

    let trigger = stack.lever.stage_id(TRIGGER).context("trigger stage")?;
    let moves = |n: usize, name: &str| -> anyhow::Result<std::path::PathBuf> {
        let file = dir.path().join(format!("{name}.txt"));
        std::fs::write(&file, stack.candidates(n, name, name).join("\n"))?;
        Ok(file)
    };
    // The steady state: tables with rows and statistics, as the hosts' leader makes them
    // (`Store::analyze_grown_tables`, at its next heartbeat) — not the plans every connection
    // would otherwise keep from the empty tables of this fresh database for the whole run.
    let warm_up = match std::env::var("SWITCHYARD_BENCH_PG_WARM_UP") {
        Ok(n) => n
            .trim()
            .parse()
            .context("SWITCHYARD_BENCH_PG_WARM_UP: a count of moves")?,
        Err(_) => WARM_UP_EVENTS,
    };
    let mut warmed = 0;
    if warm_up > 0 {
        let warm = moves(warm_up, "warm")?;
        warmed = process(&cluster, &store, &trigger, &warm, warm_up).await?.1;
        let analyzed = store.analyze_grown_tables()?;
        eprintln!("{label}: warmed up with {warm_up} moves, analyzed {analyzed:?}");
    }
    let opps_file = moves(PROCESS_EVENTS, "bench")?;
    let (cpu, statements) = (hosts_cpu(&cluster), statement_calls(&cluster.database));
    let trips = counted(&cluster).await;
    let started = Instant::now();
    let (sent, done) = process(&cluster, &store, &trigger, &opps_file, PROCESS_EVENTS).await?;
    let done = done.saturating_sub(warmed);
    let took = started.elapsed();
    rows.push(Row::plain(
        format!("{label}: processed events/s ({PROCESS_EVENTS} moves)"),
        format!(
            "{:.0}/s ({done} done; {} webhooks not 200)",
            done as f64 / took.as_secs_f64(),
            failures(&sent)
        ),
        "-",
    ));
    let trips = counted(&cluster).await.minus(&trips);
    rows.push(Row::plain(
        format!("{label}: host CPU per event (all hosts)"),
        per_unit(&cluster, cpu, statements, trips, done as f64, 1000.0, "ms"),
        "<= 0.5 ms",
    ));

    let intake = integration(stack, INTAKE)?;
    let stage = stack.lever.stage_id(INTAKE_STAGE).context("intake stage")?;
    let (cpu, statements) = (hosts_cpu(&cluster), statement_calls(&cluster.database));
    let trips = counted(&cluster).await;
    let r = drive(
        &Drive {
            url: format!("{}/hooks/{INTAKE}/lever", cluster.public_url()),
            signature_token: lever_of(intake).signature_token.expose(),
            stage: &stage,
            opportunities: None,
            connections: CONNECTIONS,
        },
        Load::Closed {
            requests: INTAKE_REQUESTS,
            max_secs: 20,
        },
    )
    .await?;
    let us = |f: &str| r["latency_us"][f].as_f64().unwrap_or_default() / 1000.0;
    rows.push(Row::plain(
        format!("{label}: acked webhooks/s, {CONNECTIONS} connections"),
        format!(
            "{:.0}/s (p50 {:.2} ms, p99 {:.2} ms; {} not 200)",
            r["acked_per_s"].as_f64().unwrap_or_default(),
            us("p50"),
            us("p99"),
            failures(&r)
        ),
        "-",
    ));
    let acked = r["ok"].as_f64().unwrap_or_default();
    let trips = counted(&cluster).await.minus(&trips);
    rows.push(Row::plain(
        format!("{label}: host CPU per ack (all hosts, processing included)"),
        per_unit(&cluster, cpu, statements, trips, acked, 1e6, "µs"),
        "<= 20 µs",
    ));
    Ok(())
}

/// Moves `requests` candidates of `opportunities` to Certn's trigger stage; what the load
/// generator reports, and how many of Certn's events are done once nothing is queued.
async fn process(
    cluster: &Cluster,
    store: &Store,
    trigger: &str,
    opportunities: &std::path::Path,
    requests: usize,
) -> anyhow::Result<(serde_json::Value, usize)> {
    let certn = integration(&cluster.stack, CERTN)?;
    let sent = drive(
        &Drive {
            url: format!("{}/hooks/{CERTN}/lever", cluster.public_url()),
            signature_token: lever_of(certn).signature_token.expose(),
            stage: trigger,
            opportunities: Some(opportunities),
            connections: CONNECTIONS,
        },
        Load::Closed {
            requests,
            max_secs: 120,
        },
    )
    .await?;
    Ok((sent, drain(store, CERTN).await?))
}

/// What the hosts counted so far, summed over them: round trips to the database
/// (`switchyard_store_round_trips_total`: statements sent together count once, which
/// `pg_stat_statements` cannot tell) and the dispatchers' looks
/// (`switchyard_dispatcher_looks_total`).
#[derive(Default)]
struct Counted {
    trips: f64,
    /// Looks asked of the store (a round trip each), and how many of them found nothing.
    asked: f64,
    asked_empty: f64,
    /// Looks the claim before them answered (no round trip of their own).
    by_claim: f64,
}

impl Counted {
    fn minus(&self, before: &Counted) -> Counted {
        Counted {
            trips: self.trips - before.trips,
            asked: self.asked - before.asked,
            asked_empty: self.asked_empty - before.asked_empty,
            by_claim: self.by_claim - before.by_claim,
        }
    }
}

async fn counted(cluster: &Cluster) -> Counted {
    let mut sum = Counted::default();
    for i in 0..cluster.len() {
        let Ok(response) = reqwest::get(format!("{}/metrics", cluster.url(i))).await else {
            continue;
        };
        let text = response.text().await.unwrap_or_default();
        for line in text.lines() {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let value = value.parse::<f64>().unwrap_or(0.0);
            if name == "switchyard_store_round_trips_total" {
                sum.trips += value;
            } else if name.starts_with("switchyard_dispatcher_looks_total{") {
                if name.contains("by=\"claim\"") {
                    sum.by_claim += value;
                } else {
                    sum.asked += value;
                    if name.contains("found=\"none\"") {
                        sum.asked_empty += value;
                    }
                }
            }
        }
    }
    sum
}

/// The hosts' CPU seconds so far, summed over their processes.
fn hosts_cpu(cluster: &Cluster) -> f64 {
    cluster.pids().into_iter().filter_map(cpu_secs).sum()
}

/// The hosts' CPU since `cpu` per unit (`scale`: 1000 for ms, 1e6 for µs), and the statements
/// per unit since `statements` when the cluster counts them.
fn per_unit(
    cluster: &Cluster,
    cpu: f64,
    statements: Option<HashMap<String, Calls>>,
    counted: Counted,
    units: f64,
    scale: f64,
    unit: &str,
) -> String {
    let units = units.max(1.0);
    let cpu = (hosts_cpu(cluster) - cpu) * scale / units;
    let label = format!("{} host(s), per {unit}", cluster.pids().len());
    let trips = counted.trips / units;
    let looks = format!(
        "looks: {:.2} asked ({:.2} empty), {:.2} answered by the claim before",
        counted.asked / units,
        counted.asked_empty / units,
        counted.by_claim / units
    );
    match statements.and_then(|before| statements_per(&cluster.database, &before, units, &label)) {
        Some((all, sent)) => format!(
            "{cpu:.1} {unit} ({all:.1} statements, {sent:.1} besides transaction control, \
             {trips:.1} round trips counted by the hosts, each; {looks})"
        ),
        None => format!("{cpu:.1} {unit} ({trips:.1} round trips each; {looks})"),
    }
}

/// Runs `sql` on `database` through `psql`; its output, or `None` if it failed (no `psql`, or
/// the cluster does not load `pg_stat_statements`).
fn psql(database: &str, sql: &str) -> Option<String> {
    std::process::Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-d", database, "-c", sql])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// A statement's calls, the server's milliseconds spent in them and the rows they answered or
/// changed, from `pg_stat_statements`.
#[derive(Clone, Copy, Default)]
struct Calls {
    calls: f64,
    ms: f64,
    rows: f64,
}

/// Calls per statement the hosts' database ran so far, from `pg_stat_statements` (through
/// `psql`), keyed by the statement's text with its whitespace folded; `None` when the cluster
/// does not load it (`scripts/pg.sh` does not: restart it with
/// `shared_preload_libraries=pg_stat_statements` to count).
fn statement_calls(database: &str) -> Option<HashMap<String, Calls>> {
    psql(
        database,
        "CREATE EXTENSION IF NOT EXISTS pg_stat_statements",
    )?;
    let out = psql(
        database,
        "SELECT calls, total_exec_time, rows, regexp_replace(query, '\\s+', ' ', 'g') \
         FROM pg_stat_statements \
         WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )?;
    let mut calls: HashMap<String, Calls> = HashMap::new();
    for line in out.lines() {
        let mut fields = line.splitn(4, '|');
        if let (Some(n), Some(ms), Some(rows), Some(query)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        {
            let c = calls.entry(query.to_string()).or_default();
            c.calls += n.parse::<f64>().unwrap_or_default();
            c.ms += ms.parse::<f64>().unwrap_or_default();
            c.rows += rows.parse::<f64>().unwrap_or_default();
        }
    }
    Some(calls)
}

/// Statements since `before` (a [`statement_calls`]) per unit, in all and counted as round
/// trips: `BEGIN`, `SAVEPOINT` and `RELEASE` travel with the next statement (`pg_direct`), and
/// `SET CONSTRAINTS` with the `COMMIT` after it, so they are no round trip of their own. With
/// `SWITCHYARD_BENCH_PG_STATEMENTS` set, prints each statement's calls per unit (those of at
/// least 0.05), the rows each call answered or changed on average (a look that found nothing
/// answers none) and the server's mean milliseconds per call to stderr under `label`.
fn statements_per(
    database: &str,
    before: &HashMap<String, Calls>,
    units: f64,
    label: &str,
) -> Option<(f64, f64)> {
    let after = statement_calls(database)?;
    // (calls per unit, mean ms per call, text, rows per call)
    let mut each: Vec<(f64, f64, &str, f64)> = after
        .iter()
        .map(|(q, c)| {
            let was = before.get(q).copied().unwrap_or_default();
            let calls = c.calls - was.calls;
            let mean = (c.ms - was.ms) / calls.max(1.0);
            let rows = (c.rows - was.rows) / calls.max(1.0);
            (calls / units, mean, q.as_str(), rows)
        })
        // Not the hosts' statements: this helper's own, and the `kv_totals` triggers' (run
        // inside the statement or the commit that fired them, which `track=all` lists apart).
        .filter(|(n, _, q, _)| {
            *n > 0.0
                && !q.contains("pg_stat_statements")
                && !q.contains("NEW.")
                && !q.contains("OLD.")
                && !q.contains("set_config(")
                && !q.contains("INSERT INTO kv_totals AS t")
                && !q.contains("FROM kv_totals t ")
                && !q.starts_with("UPDATE kv_totals")
        })
        .collect();
    each.sort_by(|a, b| b.0.total_cmp(&a.0));
    let piggybacked = |q: &str| {
        let q = q.trim_start().to_ascii_uppercase();
        q.starts_with("BEGIN")
            || q.starts_with("SAVEPOINT")
            || q.starts_with("RELEASE")
            || q.starts_with("SET CONSTRAINTS")
    };
    let all: f64 = each.iter().map(|(n, _, _, _)| n).sum();
    let trips: f64 = each
        .iter()
        .filter(|(_, _, q, _)| !piggybacked(q))
        .map(|(n, _, _, _)| n)
        .sum();
    if std::env::var_os("SWITCHYARD_BENCH_PG_STATEMENTS").is_some() {
        eprintln!(
            "--- {label}: {all:.2} statements, {trips:.2} besides transaction control, per unit"
        );
        eprintln!("calls/unit  rows/call  mean ms  statement");
        for (n, mean, q, rows) in each.iter().filter(|(n, _, _, _)| *n >= 0.05) {
            let short: String = q.chars().take(150).collect();
            eprintln!("{n:10.2}  {rows:9.2}  {mean:7.3}  {short}");
        }
    }
    Some((all, trips))
}

/// Waits (at most [`WAIT`]) until nothing is queued; returns how many of `integration`'s events
/// are done.
async fn drain(store: &Store, integration: &str) -> anyhow::Result<usize> {
    let deadline = Instant::now() + WAIT;
    while store.queue_depth()? > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(store
        .events(integration, 100_000)?
        .iter()
        .filter(|e| e.state == EventState::Done)
        .count())
}
