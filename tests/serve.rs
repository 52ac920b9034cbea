//! Running the real `switchyard serve` binary as a child process: its config written from a
//! [`Config`] (what a [`Stack`](switchyard_testkit::Stack) built), the child killed when dropped,
//! and its memory read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::config::{AtsConfig, Config, Secret};
use toml::{Table, Value};

/// `config` as the TOML file `switchyard serve --config` reads. Secrets are written in clear:
/// this is a test config for simulators. Settings left at their defaults come out explicitly.
pub fn config_toml(config: &Config) -> String {
    let mut root = Table::new();
    let s = &config.server;
    let mut server = table([
        ("listen", s.listen.clone().into()),
        ("max_body_bytes", int(s.max_body_bytes as u64)),
        ("webhook_max_age_secs", int(s.webhook_max_age_secs)),
        (
            "admin_max_upload_bytes",
            int(s.admin_max_upload_bytes as u64),
        ),
    ]);
    opt(&mut server, "public_url", s.public_url.clone());
    opt(
        &mut server,
        "admin_token",
        s.admin_token.as_ref().map(clear),
    );
    root.insert("server".into(), server.into());
    let mut storage = table([("path", path(&config.storage.path))]);
    opt(&mut storage, "url", config.storage.url.clone());
    root.insert("storage".into(), storage.into());
    let r = &config.runtime;
    let mut runtime = table([
        ("connectors_dir", path(&r.connectors_dir)),
        ("timeout_ms", int(r.timeout_ms)),
        ("memory_mb", int(r.memory_mb.into())),
        ("max_memory_mib", int(r.max_memory_mib.into())),
        ("max_instances", int(r.max_instances.into())),
        ("http_timeout_ms", int(r.http_timeout_ms)),
        ("approved_hosts", strings(&r.approved_hosts)),
        ("watch", r.watch.into()),
    ]);
    runtime.insert("limits".into(), serialized(&r.limits));
    root.insert("runtime".into(), runtime.into());
    let w = &config.worker;
    root.insert(
        "worker".into(),
        table([
            ("concurrency", int(w.concurrency as u64)),
            (
                "integration_concurrency",
                int(w.integration_concurrency as u64),
            ),
            ("max_attempts", int(w.max_attempts.into())),
            ("delivery_max_attempts", int(w.delivery_max_attempts.into())),
            ("retry_base_ms", int(w.retry_base_ms)),
            ("retry_max_ms", int(w.retry_max_ms)),
            ("lease_secs", int(w.lease_secs)),
            ("breaker_failures", int(w.breaker_failures.into())),
            ("breaker_first_open_secs", int(w.breaker_first_open_secs)),
            ("breaker_open_secs", int(w.breaker_open_secs)),
            ("shutdown_grace_secs", int(w.shutdown_grace_secs)),
        ])
        .into(),
    );
    let integrations = config.integrations.iter().map(|i| {
        let mut t = table([
            ("id", i.id.clone().into()),
            ("connector", i.connector.clone().into()),
            ("enabled", i.enabled.into()),
            ("allow_loopback", i.allow_loopback.into()),
            ("ats", ats(&i.ats).into()),
            (
                "settings",
                Value::Table(i.settings.clone().into_iter().collect()),
            ),
            (
                "secrets",
                Value::Table(
                    i.secrets
                        .iter()
                        .map(|(k, v)| (k.clone(), clear(v).into()))
                        .collect(),
                ),
            ),
            ("packages", serialized(&i.packages)),
            ("rules", serialized(&i.rules)),
        ]);
        opt(
            &mut t,
            "allowed_hosts",
            i.allowed_hosts.as_deref().map(strings),
        );
        Value::Table(t)
    });
    root.insert("integrations".into(), Value::Array(integrations.collect()));
    if let Some(o) = &config.lever_oauth {
        root.insert(
            "lever_oauth".into(),
            table([
                ("client_id", o.client_id.clone().into()),
                ("client_secret", clear(&o.client_secret).into()),
                ("authorize_url", o.authorize_url.clone().into()),
                ("token_url", o.token_url.clone().into()),
                ("revoke_url", o.revoke_url.clone().into()),
                ("audience", o.audience.clone().into()),
                ("scopes", strings(&o.scopes)),
                ("state_ttl_secs", int(o.state_ttl_secs)),
                ("refresh_margin_secs", int(o.refresh_margin_secs)),
            ])
            .into(),
        );
    }
    toml::to_string(&root).expect("a TOML table serializes")
}

/// Writes [`config_toml`] to `dir/switchyard.toml` and returns its path.
pub fn write_config(config: &Config, dir: &Path) -> PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, config_toml(config)).expect("write config");
    path
}

fn ats(ats: &AtsConfig) -> Table {
    match ats {
        AtsConfig::Lever(l) => {
            let mut t = table([
                ("kind", "lever".into()),
                ("api_base", l.api_base.clone().into()),
                ("oauth", l.oauth.into()),
                ("signature_token", clear(&l.signature_token).into()),
            ]);
            opt(&mut t, "api_key", l.api_key.as_ref().map(clear));
            opt(
                &mut t,
                "oauth_access_token",
                l.oauth_access_token.as_ref().map(clear),
            );
            opt(&mut t, "trigger_stage", l.trigger_stage.clone());
            t
        }
        AtsConfig::Gem(g) => {
            let mut t = table([
                ("kind", "gem".into()),
                ("webhook_url", g.webhook_url.clone().into()),
                ("webhook_secret", clear(&g.webhook_secret).into()),
            ]);
            opt(
                &mut t,
                "previous_webhook_secret",
                g.previous_webhook_secret.as_ref().map(clear),
            );
            opt(
                &mut t,
                "previous_secret_expires_at",
                g.previous_secret_expires_at.map(Value::Integer),
            );
            t
        }
    }
}

fn table<const N: usize>(entries: [(&str, Value); N]) -> Table {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn opt(t: &mut Table, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        t.insert(key.into(), v.into());
    }
}

fn clear(secret: &Secret) -> String {
    secret.expose().to_string()
}

fn int(n: u64) -> Value {
    Value::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn path(p: &Path) -> Value {
    p.display().to_string().into()
}

fn strings(items: &[String]) -> Value {
    Value::Array(items.iter().cloned().map(Value::from).collect())
}

fn serialized(value: &impl serde::Serialize) -> Value {
    Value::try_from(value).expect("config values serialize to TOML")
}

/// The `switchyard` binary built beside the running test or bench (`cargo build --release
/// --bins`); panics with that command if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join(name);
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first",
        bin.display()
    );
    bin
}

/// A `switchyard serve` child, killed (and reaped) when dropped.
pub struct Served(pub Child);

impl Served {
    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Stops it with SIGTERM and waits (bounded) for it to exit.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `switchyard serve --config <config>` and waits (bounded) until `addr` answers
/// `/healthz` with 200. Its log (warnings and errors) goes to this process's stderr.
pub async fn serve(config: &Path, addr: std::net::SocketAddr) -> Served {
    let child = Command::new(binary("switchyard"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn switchyard");
    let served = Served(child);
    let url = format!("http://{addr}/healthz");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status() == 200 {
                return served;
            }
        }
        assert!(Instant::now() < deadline, "the host did not come up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `VmRSS` (now) and `VmHWM` (peak) of a process, in MiB (0 when unreadable).
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time (user + system, all threads) a process has used so far, in seconds; `None` when
/// unreadable. `pid` 0 = this process.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let path = match pid {
        0 => "/proc/self/stat".to_string(),
        pid => format!("/proc/{pid}/stat"),
    };
    stat_cpu_secs(&std::fs::read_to_string(path).ok()?)
}

/// User + system CPU seconds in the text of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat`.
pub fn stat_cpu_secs(stat: &str) -> Option<f64> {
    // Fields after the command (which may hold spaces), from field 3: utime is 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// Microseconds of CPU process `pid` spent since `before` (a [`cpu_secs`] reading), per one of
/// `units`; 0 when either reading is missing.
pub fn cpu_us_per(before: Option<f64>, pid: u32, units: f64) -> f64 {
    before
        .zip(cpu_secs(pid))
        .map_or(0.0, |(b, a)| (a - b) * 1e6 / units.max(1.0))
}

/// Bytes a process has caused to be written to storage so far (`write_bytes` of
/// `/proc/<pid>/io`: its WAL frames and checkpoints); `None` when unreadable.
pub fn written_bytes(pid: u32) -> Option<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|n| n.trim().parse().ok())
}
