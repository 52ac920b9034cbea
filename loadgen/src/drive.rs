//! Drives a loopback HTTP server with pre-built request bodies over a fixed number of keep-alive
//! HTTP/1.1 connections, one task per connection (hyper's connection API: exactly `connections`
//! sockets, no pool growing behind our back).
//!
//! Closed loop: every connection sends its next request as soon as the previous one is answered.
//! Open loop: request `i` is due at `start + i / rate`; its latency is measured from that
//! intended time, so a server that stalls is charged for the requests that queued behind the
//! stall (no coordinated omission).
//!
//! Both stop taking new requests at a deadline (a slow server must not make a run last for
//! ever); requests never sent are reported as `unsent`, and in the open loop each counts in the
//! percentiles with the latency it had reached at the deadline (a lower bound), so a server
//! below the offered rate cannot look fast by leaving requests unsent.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

/// Reconnections one connection task may make before it gives up (bounds a dead server).
const MAX_RECONNECTS: usize = 20;

/// Where the requests go: a loopback address only.
#[derive(Debug, Clone)]
pub struct Target {
    addr: SocketAddr,
    authority: String,
    path: String,
}

impl Target {
    /// Parses `http://<loopback>:<port>/<path>`; refuses any other host (the generator must never
    /// load a machine it does not run on).
    pub fn loopback(url: &str) -> anyhow::Result<Target> {
        let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("only http:// URLs are supported: {url}");
        }
        let authority = uri.authority().context("URL without a host")?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let ip = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other
                .parse::<IpAddr>()
                .with_context(|| format!("{other:?} is not a loopback address"))?,
        };
        if !ip.is_loopback() {
            bail!("refusing non-loopback target {ip}: load is generated on loopback only");
        }
        Ok(Target {
            addr: SocketAddr::new(ip, authority.port_u16().unwrap_or(80)),
            authority: authority.to_string(),
            path: uri
                .path_and_query()
                .map_or("/".into(), |p| p.as_str().to_string()),
        })
    }

    async fn connect(&self) -> anyhow::Result<SendRequest<Full<Bytes>>> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connect {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = handshake(TokioIo::new(stream)).await?;
        // The connection's I/O runs beside the task that sends on it; it ends with the socket.
        tokio::spawn(connection);
        Ok(sender)
    }

    fn request(&self, body: Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        Ok(Request::post(self.path.as_str())
            .header(hyper::header::HOST, self.authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))?)
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// As fast as the server answers.
    Closed,
    /// `rate` requests per second on a fixed schedule.
    Open { rate: f64 },
}

/// One answered (or failed) request.
struct Sample {
    /// When it was meant to be sent, from the run's start (its second in `p99_by_second`).
    at: Duration,
    latency: Duration,
    /// HTTP status; 0 for a connection error or timeout.
    status: u16,
}

/// What one connection task did.
struct TaskResult {
    samples: Vec<Sample>,
    last: Option<Instant>,
}

/// Sends every body once over `connections` connections, paced by `pace`; returns the report
/// (the JSON the benchmark parses).
pub async fn run(
    target: Target,
    bodies: Vec<Bytes>,
    connections: usize,
    pace: Pace,
    timeout: Duration,
    deadline: Duration,
) -> anyhow::Result<Value> {
    let total = bodies.len();
    let target = Arc::new(target);
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    // Every connection is open before the clock starts.
    let mut senders = Vec::with_capacity(connections);
    for _ in 0..connections.max(1) {
        senders.push(target.connect().await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in senders {
        let (target, bodies, next) = (target.clone(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let limits = Limits {
                start,
                pace,
                timeout,
                stop: start + deadline,
            };
            connection_task(&target, sender, &bodies, &next, &limits).await
        });
    }
    let mut samples = Vec::with_capacity(total);
    let mut last = start;
    while let Some(result) = tasks.join_next().await {
        let result = result?;
        samples.extend(result.samples);
        last = last.max(result.last.unwrap_or(start));
    }
    let stop = start + deadline;
    let sent = samples.len();
    if let Pace::Open { rate } = pace {
        // Requests due before the deadline but never sent: waiting at least this long.
        samples.extend((sent..total).filter_map(|i| {
            let due = start + Duration::from_secs_f64(i as f64 / rate);
            (due < stop).then(|| Sample {
                at: due - start,
                latency: stop - due,
                status: UNSENT,
            })
        }));
    }
    Ok(report(samples, total, connections, pace, last - start))
}

/// The pseudo-status of a request never sent (the run hit its deadline first).
const UNSENT: u16 = 1;

/// When a connection task sends, how long it waits for an answer, and when it stops.
struct Limits {
    start: Instant,
    pace: Pace,
    timeout: Duration,
    stop: Instant,
}

/// One connection: takes the next due request until none are left.
async fn connection_task(
    target: &Target,
    sender: SendRequest<Full<Bytes>>,
    bodies: &[Bytes],
    next: &AtomicUsize,
    limits: &Limits,
) -> TaskResult {
    let mut sender = Some(sender);
    let mut reconnects = 0;
    let mut result = TaskResult {
        samples: Vec::new(),
        last: None,
    };
    loop {
        if Instant::now() >= limits.stop {
            return result;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(body) = bodies.get(i) else {
            return result;
        };
        let intended = match limits.pace {
            Pace::Closed => Instant::now(),
            Pace::Open { rate } => {
                let due = limits.start + Duration::from_secs_f64(i as f64 / rate);
                if due >= limits.stop {
                    return result;
                }
                tokio::time::sleep_until(due.into()).await;
                due
            }
        };
        if sender.as_ref().is_none_or(|s| s.is_closed()) {
            if reconnects == MAX_RECONNECTS {
                // Give the request back as not sent; the server is gone.
                return result;
            }
            reconnects += 1;
            sender = target.connect().await.ok();
        }
        let status = match sender.as_mut() {
            Some(s) => {
                match tokio::time::timeout(limits.timeout, send(target, s, body.clone())).await {
                    Ok(Ok(status)) => status,
                    _ => {
                        sender = None;
                        0
                    }
                }
            }
            None => 0,
        };
        let now = Instant::now();
        result.samples.push(Sample {
            at: intended - limits.start,
            latency: now - intended,
            status,
        });
        result.last = Some(now);
    }
}

async fn send(
    target: &Target,
    sender: &mut SendRequest<Full<Bytes>>,
    body: Bytes,
) -> anyhow::Result<u16> {
    sender.ready().await?;
    let response = sender.send_request(target.request(body)?).await?;
    let status = response.status().as_u16();
    // Read the whole answer so the connection is ready for the next request.
    response.into_body().collect().await?;
    Ok(status)
}

fn report(
    mut samples: Vec<Sample>,
    total: usize,
    connections: usize,
    pace: Pace,
    elapsed: Duration,
) -> Value {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for s in &samples {
        *statuses.entry(s.status.to_string()).or_default() += 1;
    }
    let ok = statuses.get("200").copied().unwrap_or(0);
    let errors = statuses.get("0").copied().unwrap_or(0);
    let sent = samples.iter().filter(|s| s.status != UNSENT).count();
    statuses.remove(&UNSENT.to_string());
    samples.sort_by_key(|s| s.latency);
    let by_second = p99_by_second(&samples);
    let counted = samples.len();
    let pct = |p: f64| {
        samples
            .get(rank(counted, p))
            .map_or(0, |s| s.latency.as_micros() as u64)
    };
    let secs = elapsed.as_secs_f64().max(1e-9);
    json!({
        "mode": match pace { Pace::Closed => "closed", Pace::Open { .. } => "open" },
        "connections": connections,
        "offered_per_s": match pace { Pace::Closed => Value::Null, Pace::Open { rate } => json!(rate) },
        "requests": total,
        "sent": sent,
        "unsent": total - sent,
        "ok": ok,
        "non_200": sent - ok - errors,
        "errors": errors,
        "statuses": statuses,
        "elapsed_s": secs,
        "acked_per_s": ok as f64 / secs,
        "achieved_per_s": sent as f64 / secs,
        "latency_us": {
            "from": match pace { Pace::Closed => "send", Pace::Open { .. } => "intended send time" },
            "p50": pct(0.50),
            "p90": pct(0.90),
            "p99": pct(0.99),
            "max": samples.last().map_or(0, |s| s.latency.as_micros() as u64),
            "p99_by_second": by_second,
        },
    })
}

/// The p99 latency (µs) of the requests meant to be sent in each second of the run, in order:
/// whether a tail comes from one moment (a stall) or from the whole run. `sorted` by latency.
fn p99_by_second(sorted: &[Sample]) -> Vec<u64> {
    let mut seconds: Vec<Vec<u64>> = Vec::new();
    for s in sorted {
        let k = s.at.as_secs() as usize;
        if seconds.len() <= k {
            seconds.resize_with(k + 1, Vec::new);
        }
        seconds[k].push(s.latency.as_micros() as u64);
    }
    seconds
        .iter()
        .map(|l| l.get(rank(l.len(), 0.99)).copied().unwrap_or(0))
        .collect()
}

/// The index of percentile `p` (0..=1) among `len` sorted values (nearest rank).
pub(crate) fn rank(len: usize, p: f64) -> usize {
    ((len.max(1) - 1) as f64 * p).round() as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stall in one second shows in that second's p99 alone.
    #[test]
    fn each_second_of_a_run_has_its_own_p99() {
        let sample = |at_ms: u64, latency_us: u64| Sample {
            at: Duration::from_millis(at_ms),
            latency: Duration::from_micros(latency_us),
            status: 200,
        };
        let mut samples: Vec<Sample> = (0..100)
            .map(|i| sample(i * 5, 1_000))
            .chain((0..100).map(|i| sample(1_000 + i * 5, if i >= 98 { 9_000 } else { 2_000 })))
            .collect();
        samples.sort_by_key(|s| s.latency);
        assert_eq!(p99_by_second(&samples), [1_000, 9_000]);
    }

    #[test]
    fn only_loopback_targets_are_accepted() {
        let t = Target::loopback("http://127.0.0.1:8080/hooks/a/lever").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.path, "/hooks/a/lever");
        assert!(Target::loopback("http://localhost:9/x").is_ok());
        assert!(Target::loopback("http://[::1]:9/x").is_ok());
        for refused in [
            "http://10.0.0.1:80/x",
            "http://example.com/x",
            "https://127.0.0.1/x",
            "http://0.0.0.0:80/x",
        ] {
            assert!(Target::loopback(refused).is_err(), "{refused}");
        }
    }
}
