//! Several `switchyard serve` processes on one PostgreSQL database, behind a loopback load
//! balancer, with the simulators of a [`Stack`] wired to the balancer: the multi-host test's
//! harness. Each host is a child process with its own `server.listen` and data directory (its
//! own machine, as far as the host can tell) and the same config otherwise; `server.public_url`
//! is the balancer's, so Lever's webhooks and Certn's callbacks are spread over the live hosts
//! the way a real load balancer would spread them.
//!
//! A host can be killed with SIGKILL ([`Cluster::kill`]) and started again on the same port and
//! data directory ([`Cluster::restart`]). Dropping the cluster kills every child before their
//! temporary directory goes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard::config::{AtsConfig, Config};
use tokio::net::{TcpListener, TcpStream};

use crate::{Stack, StackOptions};

/// How long a host may take to answer `/healthz` after it was spawned.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// N hosts on one database, the balancer in front of them, and the simulators.
pub struct Cluster {
    /// The simulators; `stack.config` is the template every host's config is made from, and
    /// `stack.addr` is the balancer's address.
    pub stack: Stack,
    /// The URL of the hosts' shared PostgreSQL database (`storage.url`).
    pub database: String,
    /// The admin API's bearer token on every host.
    pub admin_token: String,
    balancer: Balancer,
    hosts: Vec<HostSlot>,
    binary: PathBuf,
    // Last: removed after the children (see `Drop`).
    _dir: tempfile::TempDir,
}

/// One host: its address, config file and, while it runs, its process.
struct HostSlot {
    addr: SocketAddr,
    config: PathBuf,
    child: Option<Child>,
}

impl Cluster {
    /// Starts the simulators, the balancer and `hosts` `switchyard serve` processes (`binary`)
    /// on a new database of the test cluster ([`crate::pg::database`]), and waits until each
    /// answers `/healthz`. `tweak` adjusts the stack's options (Certn's, the worker's) first.
    pub async fn start(
        binary: &Path,
        connectors_dir: &Path,
        hosts: usize,
        tweak: impl FnOnce(&mut StackOptions),
    ) -> anyhow::Result<Cluster> {
        let dir = tempfile::Builder::new().prefix("sy-cluster-").tempdir()?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let public = listener.local_addr()?;
        let mut opts = StackOptions::new(connectors_dir, &dir.path().join("template"));
        opts.listen = Some(public);
        tweak(&mut opts);
        let stack = Stack::prepare(opts).await?;
        let database = crate::pg::database();
        let admin_token = format!("cluster-admin-{}", uuid::Uuid::new_v4().simple());
        let mut slots = Vec::with_capacity(hosts);
        for i in 0..hosts {
            let addr = crate::ports::free_loopback_addr()?;
            let host_dir = dir.path().join(format!("host{i}"));
            std::fs::create_dir_all(&host_dir)?;
            let mut config = stack.config.clone();
            config.server.listen = addr.to_string();
            config.server.public_url = Some(format!("http://{public}"));
            config.storage.path = host_dir.join("data/switchyard.db");
            config.storage.url = Some(database.clone());
            let path = host_dir.join("switchyard.toml");
            std::fs::write(&path, serve_toml(&config, &admin_token)?)?;
            slots.push(HostSlot {
                addr,
                config: path,
                child: None,
            });
        }
        let balancer = Balancer::start(listener, slots.iter().map(|s| s.addr).collect());
        let mut cluster = Cluster {
            stack,
            database,
            admin_token,
            balancer,
            hosts: slots,
            binary: binary.to_path_buf(),
            _dir: dir,
        };
        for i in 0..hosts {
            cluster.restart(i).await?;
        }
        Ok(cluster)
    }

    /// How many hosts the cluster has (running or not).
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// Always false: a cluster has at least the hosts it was started with.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Host `i`'s own base URL (`http://127.0.0.1:<port>`), bypassing the balancer.
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.hosts[i].addr)
    }

    /// The balancer's base URL: every host's `server.public_url`.
    pub fn public_url(&self) -> String {
        format!("http://{}", self.stack.addr)
    }

    /// Whether host `i`'s process is running.
    pub fn is_running(&mut self, i: usize) -> bool {
        self.hosts[i]
            .child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// The process ids of the hosts that run now (for CPU figures from `/proc/<pid>/stat`).
    pub fn pids(&self) -> Vec<u32> {
        self.hosts
            .iter()
            .filter_map(|s| s.child.as_ref().map(Child::id))
            .collect()
    }

    /// Connections the balancer handed to each host so far.
    pub fn connections(&self) -> Vec<usize> {
        self.balancer.connections()
    }

    /// Kills host `i` with SIGKILL (no drain, no clean shutdown) and reaps it.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let mut child = self.hosts[i]
            .child
            .take()
            .with_context(|| format!("host {i} is not running"))?;
        // `Child::kill` is SIGKILL on Unix.
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Starts host `i` (again) on its port, data directory and config, and waits until it
    /// answers `/healthz`.
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.hosts[i].child.is_none(), "host {i} is still running");
        let slot = &mut self.hosts[i];
        let child = Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&slot.config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;
        slot.child = Some(child);
        let url = format!("http://{}/healthz", slot.addr);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if !self.is_running(i) {
                anyhow::bail!("host {i} exited before it answered /healthz");
            }
            anyhow::ensure!(Instant::now() < deadline, "host {i} did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Before the temporary directory goes (fields drop after this): no orphan hosts.
        for slot in &mut self.hosts {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.balancer.task.abort();
    }
}

/// A round-robin TCP proxy over the hosts' addresses, skipping a host that refuses the
/// connection (killed, or not up yet): what a load balancer with connect-failure fallback does.
/// Per connection, not per request: a keep-alive client stays on one host until its
/// connection breaks.
struct Balancer {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<Mutex<Vec<usize>>>,
}

impl Balancer {
    fn start(listener: TcpListener, hosts: Vec<SocketAddr>) -> Balancer {
        let counts = Arc::new(Mutex::new(vec![0; hosts.len()]));
        let next = Arc::new(AtomicUsize::new(0));
        let hosts = Arc::new(hosts);
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (hosts, next, counts) = (hosts.clone(), next.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Some(upstream) = pick(&hosts, &next, &counts).await {
                        proxy(client, upstream).await;
                    }
                    // No host accepted: dropping the client's connection is the LB's answer.
                });
            }
        });
        Balancer { task, counts }
    }

    fn connections(&self) -> Vec<usize> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The next host in turn that accepts a connection.
async fn pick(
    hosts: &[SocketAddr],
    next: &AtomicUsize,
    counts: &Mutex<Vec<usize>>,
) -> Option<TcpStream> {
    let start = next.fetch_add(1, Ordering::Relaxed);
    for k in 0..hosts.len() {
        let i = (start + k) % hosts.len();
        if let Ok(stream) = TcpStream::connect(hosts[i]).await {
            if let Ok(mut c) = counts.lock() {
                c[i] += 1;
            }
            return Some(stream);
        }
    }
    None
}

async fn proxy(mut client: TcpStream, mut upstream: TcpStream) {
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    // Ends when either side closes or breaks (a killed host resets its connections).
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

/// `config` (a [`Stack`]'s, one Lever integration per entry) as the TOML file `switchyard serve`
/// reads, with the admin API on.
pub fn serve_toml(config: &Config, admin_token: &str) -> anyhow::Result<String> {
    use std::fmt::Write;
    let w = &config.worker;
    let r = &config.runtime;
    let s = &config.storage;
    let mut out = format!(
        r#"[server]
listen = "{listen}"
public_url = {public:?}
admin_token = "{admin_token}"
[storage]
path = {path:?}
{url}
[runtime]
connectors_dir = {connectors:?}
timeout_ms = {timeout}
approved_hosts = {approved:?}
[worker]
concurrency = {concurrency}
max_attempts = {attempts}
retry_base_ms = {base}
retry_max_ms = {max}
lease_secs = {lease}
"#,
        listen = config.server.listen,
        public = config.server.public_url.clone().unwrap_or_default(),
        path = s.path.display().to_string(),
        url = s
            .url
            .as_ref()
            .map(|u| format!("url = {u:?}"))
            .unwrap_or_default(),
        connectors = r.connectors_dir.display().to_string(),
        timeout = r.timeout_ms,
        approved = r.approved_hosts,
        concurrency = w.concurrency,
        attempts = w.max_attempts,
        base = w.retry_base_ms,
        max = w.retry_max_ms,
        lease = w.lease_secs,
    );
    for i in &config.integrations {
        let AtsConfig::Lever(lever) = &i.ats else {
            anyhow::bail!("integration {}: only Lever integrations are written", i.id);
        };
        let key = lever
            .api_key
            .as_ref()
            .with_context(|| format!("integration {}: no Lever API key", i.id))?;
        write!(
            out,
            r#"
[[integrations]]
id = "{id}"
connector = "{connector}"
allowed_hosts = {hosts:?}
allow_loopback = {loopback}
[integrations.ats]
kind = "lever"
api_base = "{api_base}"
api_key = "{key}"
signature_token = "{token}"
{trigger}
"#,
            id = i.id,
            connector = i.connector,
            hosts = i.allowed_hosts.clone().unwrap_or_default(),
            loopback = i.allow_loopback,
            api_base = lever.api_base,
            key = key.expose(),
            token = lever.signature_token.expose(),
            trigger = lever
                .trigger_stage
                .as_ref()
                .map(|t| format!("trigger_stage = {t:?}"))
                .unwrap_or_default(),
        )?;
        out.push_str("[integrations.settings]\n");
        for (k, v) in &i.settings {
            writeln!(out, "{k:?} = {v}")?;
        }
        out.push_str("[integrations.secrets]\n");
        for (k, v) in &i.secrets {
            writeln!(out, "{k:?} = {:?}", v.expose())?;
        }
        for p in &i.packages {
            write!(
                out,
                "[[integrations.packages]]\nname = {:?}\ndefault = {}\n[integrations.packages.params]\n",
                p.name, p.default
            )?;
            for (k, v) in &p.params {
                writeln!(out, "{k:?} = {v:?}")?;
            }
        }
    }
    // Parsed back here so that a field this writer gets wrong fails at once, not in the child.
    toml::from_str::<Config>(&out).context("the written config does not parse")?;
    Ok(out)
}
