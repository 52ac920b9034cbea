//! `switchyard demo`, and the [`Stack`] it runs on: the Lever and Certn simulators plus a host, all
//! on loopback, wired the way an operator would wire them (Lever's stage-change webhook pointed at
//! the host, Certn's webhook URL pointed at the host's vendor callback URL). The end-to-end tests
//! use the same `Stack`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_sim::certn::{CertnOptions, CertnSim};
use switchyard_sim::lever::{LeverSim, NewOpportunity, Opportunity};

use crate::config::{
    AtsConfig, Config, IntegrationConfig, LeverConfig, PackageConfig, RuntimeConfig, Secret,
    ServerConfig, StorageConfig, WorkerConfig,
};
use crate::RunningHost;

/// The Certn integration's id in a [`Stack`].
pub const CERTN: &str = "demo-certn";
/// The Lever stage that triggers Certn.
pub const TRIGGER: &str = "Background Check";

/// How to build a [`Stack`].
pub struct StackOptions {
    pub connectors_dir: PathBuf,
    pub data_dir: PathBuf,
    pub certn: CertnOptions,
    pub worker: WorkerConfig,
    pub runtime: RuntimeConfig,
    /// Extra integrations on the same Lever account: (id, connector id, trigger stage name).
    pub extra: Vec<(String, String, String)>,
    /// Fixed listen address (to restart a host on the same URL); default: any loopback port.
    pub listen: Option<std::net::SocketAddr>,
}

impl StackOptions {
    /// Defaults suited to demos and tests: fast retries, short deadlines.
    pub fn new(connectors_dir: &Path, data_dir: &Path) -> StackOptions {
        StackOptions {
            connectors_dir: connectors_dir.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            certn: CertnOptions::default(),
            worker: WorkerConfig {
                retry_base_ms: 200,
                retry_max_ms: 2_000,
                max_attempts: 10,
                lease_secs: 30,
                ..WorkerConfig::default()
            },
            runtime: RuntimeConfig {
                connectors_dir: connectors_dir.to_path_buf(),
                timeout_ms: 5_000,
                ..RuntimeConfig::default()
            },
            extra: Vec::new(),
            listen: None,
        }
    }
}

/// Simulators and a host, wired together.
pub struct Stack {
    pub lever: LeverSim,
    pub certn: CertnSim,
    pub host: Option<RunningHost>,
    /// The configuration the host runs with (also usable for `switchyard serve` in a subprocess).
    pub config: Config,
    pub addr: std::net::SocketAddr,
}

impl Stack {
    /// Starts both simulators and, on a loopback port, the host.
    pub async fn start(opts: StackOptions) -> anyhow::Result<Stack> {
        let stack = Stack::prepare(opts).await?;
        stack.run().await
    }

    /// Starts the simulators and builds the host's config without starting the host.
    pub async fn prepare(opts: StackOptions) -> anyhow::Result<Stack> {
        let lever = LeverSim::start().await?;
        let certn = CertnSim::start(opts.certn.clone()).await?;
        let addr = match opts.listen {
            Some(a) => a,
            None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        };
        let base = format!("http://{addr}");
        let lever_host = host_of(&lever.api_base());
        let mut integrations = Vec::new();
        let add = |id: &str, connector: &str, trigger: &str, secrets: BTreeMap<String, Secret>| {
            let token =
                lever.register_webhook("candidateStageChange", &format!("{base}/hooks/{id}/lever"));
            if lever.stage_id(trigger).is_none() {
                lever.add_stage(trigger);
            }
            IntegrationConfig {
                id: id.into(),
                connector: connector.into(),
                enabled: true,
                ats: AtsConfig::Lever(LeverConfig {
                    api_base: lever.api_base(),
                    api_key: Secret::new(lever.api_key()),
                    signature_token: Secret::new(token),
                    trigger_stage: Some(trigger.into()),
                }),
                allowed_hosts: Some(vec![host_of(&certn.api_base()), lever_host.clone()]),
                settings: BTreeMap::from([(
                    "api-base".to_string(),
                    toml::Value::String(certn.api_base()),
                )]),
                secrets,
                packages: package_configs(&opts.certn.packages),
            }
        };
        integrations.push(add(
            CERTN,
            "certn",
            TRIGGER,
            BTreeMap::from([
                ("api-key".to_string(), Secret::new(certn.api_key())),
                (
                    "webhook-secret".to_string(),
                    Secret::new(certn.webhook_secret()),
                ),
            ]),
        ));
        for (id, connector, trigger) in &opts.extra {
            integrations.push(add(id, connector, trigger, BTreeMap::new()));
        }
        certn.set_webhook_url(&format!("{base}/hooks/{CERTN}/vendor"));
        let config = Config {
            server: ServerConfig {
                listen: addr.to_string(),
                ..ServerConfig::default()
            },
            storage: StorageConfig {
                path: opts.data_dir.join("switchyard.db"),
            },
            runtime: opts.runtime,
            worker: opts.worker,
            integrations,
        };
        Ok(Stack {
            lever,
            certn,
            host: None,
            config,
            addr,
        })
    }

    /// Starts (or restarts) the in-process host with the stack's config.
    pub async fn run(mut self) -> anyhow::Result<Stack> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.host = Some(crate::start_on(self.config.clone(), listener).await?);
        Ok(self)
    }

    /// The running host.
    pub fn host(&self) -> &RunningHost {
        self.host.as_ref().expect("the stack's host is running")
    }

    /// Adds a candidate (optionally on a posting) and returns the opportunity id.
    pub fn candidate(
        &self,
        name: &str,
        email: Option<&str>,
        tags: &[&str],
        posting: Option<&str>,
    ) -> String {
        self.lever.add_opportunity(NewOpportunity {
            name: name.into(),
            emails: email.map(|e| vec![e.to_string()]).unwrap_or_default(),
            phones: vec!["+1 555 0100".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            posting_id: posting.map(str::to_string),
        })
    }

    /// Moves a candidate into stage `stage` (Lever then sends the signed webhook).
    pub async fn move_to(&self, opportunity: &str, stage: &str) -> anyhow::Result<u16> {
        let stage_id = self.lever.stage_id(stage).context("no such stage")?;
        self.lever.move_to_stage(opportunity, &stage_id).await
    }

    /// Waits (bounded) until the opportunity satisfies `done`; returns its last snapshot.
    pub async fn wait_for(
        &self,
        opportunity: &str,
        within: Duration,
        done: impl Fn(&Opportunity) -> bool,
    ) -> anyhow::Result<Opportunity> {
        let deadline = Instant::now() + within;
        loop {
            let opp = self
                .lever
                .opportunity(opportunity)
                .context("no such opportunity")?;
            if done(&opp) {
                return Ok(opp);
            }
            if Instant::now() > deadline {
                anyhow::bail!("timed out; opportunity is now {opp:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn package_configs(names: &[String]) -> Vec<PackageConfig> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| PackageConfig {
            name: name.clone(),
            default: i == 0,
            params: BTreeMap::from([(
                "checks".to_string(),
                "criminal_record_check,identity_verification".to_string(),
            )]),
        })
        .collect()
}

/// `host:port` of a base URL.
fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_default()
}

/// Runs the demo: one candidate through to `CERTN - Complete`, one without an email.
pub async fn run(connectors: &Path) -> anyhow::Result<()> {
    let certn_wasm = connectors.join("certn.wasm");
    anyhow::ensure!(
        certn_wasm.exists(),
        "{} not found: build the plugins first (cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml)",
        certn_wasm.display()
    );
    let data = std::env::temp_dir().join(format!("switchyard-demo-{}", uuid::Uuid::new_v4()));
    let mut opts = StackOptions::new(connectors, &data);
    opts.certn.step_delay = Some(Duration::from_millis(600));
    let stack = Stack::start(opts).await?;
    let app = &stack.host().app;
    let connector = app
        .registry
        .get("certn")
        .context("the certn connector did not load")?;

    println!("switchyard demo — everything below runs on loopback\n");
    println!("  Lever simulator   {}", stack.lever.api_base());
    println!("  Certn simulator   {}", stack.certn.api_base());
    println!(
        "  switchyard        http://{}  (store: {})",
        stack.addr,
        stack.config.storage.path.display()
    );
    println!(
        "  connector loaded  {} ({})",
        connector.version_tag(),
        connector.manifest.display_name
    );
    println!("  Lever webhook URL {}", app.lever_webhook_url(CERTN));
    println!("  Certn webhook URL {}\n", app.callback_url(CERTN));

    let mut feed = app.timeline.subscribe();
    let started = Instant::now();
    let printer = tokio::spawn(async move {
        while let Ok(event) = feed.recv().await {
            println!("  {:>6.2}s  {event}", started.elapsed().as_secs_f64());
        }
    });

    let posting = stack
        .lever
        .add_posting("Senior Rust Engineer", &["Engineering"]);
    let ada = stack.candidate("Ada Lovelace", Some("ada@example.com"), &[], Some(&posting));
    println!("▶ Ada Lovelace (ada@example.com) moved to \"{TRIGGER}\"");
    stack.move_to(&ada, TRIGGER).await?;
    let ada_final = stack
        .wait_for(&ada, Duration::from_secs(30), |o| {
            o.tags.iter().any(|t| t == "CERTN - Complete") && !o.links.is_empty()
        })
        .await?;

    let grace = stack.candidate("Grace Hopper", None, &[], Some(&posting));
    tokio::time::sleep(Duration::from_millis(300)).await;
    println!("\n▶ Grace Hopper (no email) moved to \"{TRIGGER}\"");
    stack.move_to(&grace, TRIGGER).await?;
    let grace_final = stack
        .wait_for(&grace, Duration::from_secs(15), |o| {
            o.tags.iter().any(|t| t == "CERTN - ERROR (No Email)")
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    printer.abort();

    println!("\nFinal Lever opportunities:");
    for opp in [&ada_final, &grace_final] {
        println!("  {} ({})", opp.name, opp.id);
        println!("    tags:  {:?}", opp.tags);
        println!("    links: {:?}", opp.links);
    }
    println!(
        "\nCertn invitations sent: {}",
        stack.certn.applications().len()
    );
    if let Some(host) = stack.host {
        host.shutdown().await;
    }
    let _ = std::fs::remove_dir_all(&data);
    Ok(())
}
