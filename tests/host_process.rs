//! `switchyard serve` as a separate process, for the tests that kill or stop the host itself
//! (`faults`, `intake`): the stack's config as a TOML file, the child process, readiness.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_testkit::{Stack, TRIGGER};

use crate::lever_of;

/// The `switchyard` binary built beside this test (`cargo build --release --bins`).
pub fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let bin = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .join("switchyard");
    assert!(
        bin.exists(),
        "{} missing: run `cargo build --release --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The stack's config as a file for `switchyard serve`, with `worker` as the `[worker]` table.
pub fn write_config(stack: &Stack, dir: &std::path::Path, worker: &str) -> std::path::PathBuf {
    let c = &stack.config;
    let i = &c.integrations[0];
    let lever = lever_of(i);
    let text = format!(
        r#"
[server]
listen = "{listen}"
[storage]
path = "{db}"
[runtime]
connectors_dir = "{connectors}"
timeout_ms = 5000
# The simulators' addresses, approved by the operator (an integration's hosts must be among them).
approved_hosts = {hosts:?}
[worker]
retry_base_ms = 200
retry_max_ms = 1000
max_attempts = 50
{worker}
[[integrations]]
id = "{id}"
connector = "certn"
allowed_hosts = {hosts:?}
# The simulators listen on loopback.
allow_loopback = true
[integrations.ats]
kind = "lever"
api_base = "{lever_base}"
api_key = "{lever_key}"
signature_token = "{token}"
trigger_stage = "{TRIGGER}"
[integrations.settings]
api-base = "{certn_base}"
[integrations.secrets]
api-key = "{certn_key}"
webhook-secret = "{certn_secret}"
[[integrations.packages]]
name = "Basic"
default = true
params = {{ checks = "criminal_record_check" }}
"#,
        listen = c.server.listen,
        db = c.storage.path.display(),
        connectors = c.runtime.connectors_dir.display(),
        id = i.id,
        hosts = i.allowed_hosts.clone().unwrap_or_default(),
        lever_base = lever.api_base,
        lever_key = lever.api_key.as_ref().expect("an API key").expose(),
        token = lever.signature_token.expose(),
        certn_base = stack.certn.api_base(),
        certn_key = stack.certn.api_key(),
        certn_secret = stack.certn.webhook_secret(),
    );
    let path = dir.join("switchyard.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// A `switchyard serve` child, killed if the test ends (or panics) while it runs.
pub struct Host(pub Child);

impl std::ops::Deref for Host {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Host {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `switchyard serve` and waits until it answers `/healthz`.
pub async fn serve(config: &std::path::Path, addr: std::net::SocketAddr) -> Host {
    let child = Host(
        Command::new(binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard"),
    );
    let url = format!("http://{addr}/healthz");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(&url).send().await {
            if r.status() == 200 {
                return child;
            }
        }
        assert!(Instant::now() < deadline, "the host did not come up");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
