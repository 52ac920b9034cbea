//! The configuration file (`switchyard serve --config <file>`), TOML. `switchyard.example.toml` at
//! the repository root documents every setting.
//!
//! Secrets may be written inline or as `env:NAME` to read them from the environment at start-up;
//! either way they are held in [`Secret`], whose `Debug` never prints the value.
//!
//! Modules: this one (the file's sections and their checks), [`forms`] (integrations as the admin
//! API reads and writes them), [`limits`] (`[runtime.limits]`, `[runtime.pool]`), [`rules`]
//! (package rules), [`storage`] (`[storage]`: the database and retention). Each ATS's section
//! (`[integrations.ats]`, `[lever_oauth]`) and its checks live in its own folder,
//! `crate::ats::<name>::config`; they are re-exported here.

pub mod forms;
pub mod limits;
pub mod rules;
pub mod storage;

pub use crate::ats::config::AtsConfig;
pub use crate::ats::gem::config::GemConfig;
pub use crate::ats::lever::config::{LeverAuth, LeverConfig, LeverOAuthConfig};
pub use crate::secret::Secret;
pub use rules::RuleConfig;
pub use storage::StorageConfig;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Errors found while reading or checking the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("integration `{integration}`: {problem}")]
    Integration {
        integration: String,
        problem: String,
    },
    #[error(transparent)]
    MissingEnv(#[from] crate::secret::MissingEnv),
    #[error("server.admin_token must be at least 16 characters")]
    AdminToken,
    #[error("server.viewer_token must be at least 16 characters, differ from server.admin_token, and needs server.admin_token (the console is off without it)")]
    ViewerToken,
    #[error("{0}")]
    Runtime(String),
    /// Every problem found, so that one run names them all (see [`ConfigError::all`]).
    #[error("{} problems in the configuration:{}", .0.len(), list(.0))]
    Several(Vec<ConfigError>),
}

impl ConfigError {
    /// `problems` as one error: `None` when there are none, the problem itself when alone.
    pub fn all(mut problems: Vec<ConfigError>) -> Option<ConfigError> {
        match problems.len() {
            0 => None,
            1 => problems.pop(),
            _ => Some(ConfigError::Several(problems)),
        }
    }

    /// The single problems of this error (a [`ConfigError::Several`] flattened).
    pub fn into_problems(self) -> Vec<ConfigError> {
        match self {
            ConfigError::Several(all) => all.into_iter().flat_map(Self::into_problems).collect(),
            one => vec![one],
        }
    }
}

/// One problem per line, for [`ConfigError::Several`].
fn list(problems: &[ConfigError]) -> String {
    problems.iter().map(|p| format!("\n  - {p}")).collect()
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub worker: WorkerConfig,
    #[serde(default)]
    pub integrations: Vec<IntegrationConfig>,
    /// `[lever_oauth]`: the host's Lever OAuth app, for integrations with `ats.oauth = true`.
    #[serde(default)]
    pub lever_oauth: Option<LeverOAuthConfig>,
}

/// `[server]`: the HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// The URL at which the ATS and vendors reach this server (behind a TLS proxy in production).
    /// Used to show webhook URLs and to tell connectors their callback URL. Defaults to
    /// `http://<listen address>`.
    pub public_url: Option<String>,
    /// Largest accepted request body; larger → 413.
    pub max_body_bytes: usize,
    /// Lever webhooks whose `triggeredAt` is further than this from now are rejected (401).
    pub webhook_max_age_secs: u64,
    /// Bearer token of the admin API (`/admin/...`). None: the admin API is off (404).
    pub admin_token: Option<Secret>,
    /// Sign-in token of the console's read-only role (`/console`); `admin_token` signs in as an
    /// operator. None: only operators can sign in.
    pub viewer_token: Option<Secret>,
    /// Largest connector upload accepted by the admin API.
    pub admin_max_upload_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: None,
            max_body_bytes: 256 * 1024,
            webhook_max_age_secs: 15 * 60,
            admin_token: None,
            viewer_token: None,
            admin_max_upload_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[runtime]`: how connectors are loaded and sandboxed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Directory whose `*.wasm` files are loaded as connectors at start-up.
    pub connectors_dir: PathBuf,
    /// Wall-clock and CPU deadline of one connector invocation.
    pub timeout_ms: u64,
    /// Linear memory (MiB) granted to a connector whose manifest does not say how much it needs
    /// (every 0.1 connector, or `limits.memory-mib = 0`). At most `max_memory_mib`.
    pub memory_mb: u32,
    /// Cap on the linear memory (MiB) any connector may ask for in its manifest
    /// (`limits.memory-mib`); a component asking for more is refused at load. Also the memory its
    /// manifest is read with.
    pub max_memory_mib: u32,
    /// Cap on the core instances of one connector's store (Rust components have 3, componentize-js
    /// 4, componentize-py 14); a component with more, or asking for more, is refused at load.
    /// Tables and memories per store follow this number.
    pub max_instances: u32,
    /// Cap on one outbound HTTP request made by a connector.
    pub http_timeout_ms: u64,
    /// Outbound hosts (`name` or `name:port`) the operator approves. A new connector version
    /// (upload, `--watch`) may ask in its manifest only for these and the hosts of the version it
    /// replaces; an integration's `allowed_hosts` must be among these or the serving manifest's
    /// `outbound-hosts`.
    pub approved_hosts: Vec<String>,
    /// Byte, rate and concurrency bounds of the sandbox (see SECURITY.md).
    pub limits: limits::SandboxLimits,
    /// The instance pool (`[runtime.pool]`): slots reserved at start-up, reused by every call.
    pub pool: limits::PoolSettings,
    /// Watch `connectors_dir` and deploy new or changed files (`serve --watch` sets it).
    pub watch: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            connectors_dir: PathBuf::from("plugins/target/wasm32-wasip2/release"),
            timeout_ms: 30_000,
            memory_mb: 64,
            max_memory_mib: 256,
            max_instances: 32,
            http_timeout_ms: 15_000,
            approved_hosts: Vec::new(),
            limits: limits::SandboxLimits::default(),
            pool: limits::PoolSettings::default(),
            watch: false,
        }
    }
}

/// `[worker]`: background processing of stored events.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Events processed at once, over all integrations.
    pub concurrency: usize,
    /// Events of one integration processed at once (a bulkhead: a slow vendor or ATS holds at
    /// most this many workers; the others keep serving other integrations). With 2 or more
    /// workers it is lowered to `concurrency - 1` if higher (see
    /// [`WorkerConfig::effective_integration_concurrency`]).
    pub integration_concurrency: usize,
    /// Threads the workers run on, apart from the threads that serve HTTP (0 = one per CPU).
    pub threads: usize,
    /// How much lower the workers' CPU priority is than the server's (a Linux nice increment,
    /// 0–19; 0 = the same): with every CPU busy, acknowledging webhooks comes first and the queue
    /// drains behind it. See `flow::threads`.
    pub nice: i32,
    /// Attempts before an event is dead-lettered.
    pub max_attempts: u32,
    /// Attempts before an outbound ATS webhook (a Gem status delivery) is dead-lettered. Higher
    /// than `max_attempts`: the receiver may be down for a while and nothing else can redo it.
    pub delivery_max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    pub retry_base_ms: u64,
    /// Cap on one retry delay.
    pub retry_max_ms: u64,
    /// Lease of a claimed event. The run holding it renews it every third of this while the
    /// step runs (so a live step never loses it); a host that died without a trace loses its
    /// events after at most this long. A restarted host on the same machine takes back its
    /// previous run's events at once.
    pub lease_secs: u64,
    /// Consecutive transient vendor failures (errors, timeouts) that open an integration's
    /// circuit breaker: its events wait instead of running.
    pub breaker_failures: u32,
    /// How long a breaker that just opened waits before letting one probe event through
    /// (half-open). Each failed probe doubles the wait, up to `breaker_open_secs`; a successful
    /// one closes the breaker and the next opening starts from this again.
    pub breaker_first_open_secs: u64,
    /// The longest an open breaker waits before letting one probe event through: the wait of a
    /// long outage, reached by doubling `breaker_first_open_secs`.
    pub breaker_open_secs: u64,
    /// On SIGTERM/SIGINT: how long events in flight may take to finish; those still running
    /// then are handed back to the queue (not counted as an attempt).
    pub shutdown_grace_secs: u64,
    /// How often an event waiting for an ATS permission or for room in its connector's state
    /// quota is tried again by itself (see `store::waiting`). Reconnects, connector activations,
    /// changed settings and an operator's retry resume such events at once.
    pub recheck_secs: u64,
}

impl WorkerConfig {
    /// The per-integration limit the dispatcher applies: `integration_concurrency`, but with 2
    /// or more workers at most `concurrency - 1`, so one integration (a hung vendor) can never
    /// hold every worker and a neighbour always has one. With one worker there is nothing to
    /// leave. Start-up logs a warning when this lowers the configured value.
    pub fn effective_integration_concurrency(&self) -> usize {
        leave_one(self.integration_concurrency, self.concurrency)
    }
}

/// `limit` (at least 1), lowered to `of - 1` when `of` is at least 2: one integration's share of
/// `of` workers, slots or threads always leaves one to the others.
pub(crate) fn leave_one(limit: usize, of: usize) -> usize {
    let limit = limit.max(1);
    if of >= 2 {
        limit.min(of - 1)
    } else {
        limit
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            // Measured (misbehave connector + Lever simulator, 2 cores): a step mostly waits on
            // the ATS, so more workers than cores pay; beyond 16 nothing more was gained.
            concurrency: 16,
            integration_concurrency: 8,
            threads: 0,
            // Measured (2 cores, external load generator while a backlog drained): with the
            // workers at the server's priority intake fell to the queue's pace.
            nice: 10,
            max_attempts: 8,
            delivery_max_attempts: 20,
            retry_base_ms: 2_000,
            retry_max_ms: 10 * 60 * 1000,
            lease_secs: 15,
            breaker_failures: 5,
            // A short stall is probed within seconds; a long one costs a probe per 30 s.
            breaker_first_open_secs: 2,
            breaker_open_secs: 30,
            shutdown_grace_secs: 20,
            // An operator fixing a permission expects it to take within minutes without a
            // click; each re-check costs one ATS read or one connector call per event.
            recheck_secs: 300,
        }
    }
}

/// `[[integrations]]`: one customer's ATS wired to one vendor connector.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntegrationConfig {
    /// URL-safe identifier, part of the webhook URLs (`/hooks/<id>/lever`).
    pub id: String,
    /// The connector's manifest id, e.g. `certn`.
    pub connector: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The ATS side.
    pub ats: AtsConfig,
    /// Hosts (`name` or `name:port`; no port = the scheme's default) the connector may call on
    /// top of its manifest's `outbound-hosts`. Each must be approved by the operator:
    /// in `runtime.approved_hosts` or the serving connector's manifest.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// Lets the connector reach loopback addresses (127.0.0.0/8, ::1): for local simulators and
    /// tests only. Every other internal address stays refused.
    #[serde(default)]
    pub allow_loopback: bool,
    /// This integration's connector state quota (bytes), instead of
    /// `runtime.limits.state_total_bytes`.
    #[serde(default)]
    pub state_total_bytes: Option<u64>,
    /// Non-secret connector settings (`config.get`). Non-string values are passed as JSON.
    #[serde(default)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Secret connector settings (`config.secret`).
    #[serde(default)]
    pub secrets: BTreeMap<String, Secret>,
    /// The vendor packages; exactly one is the default when any are given.
    #[serde(default)]
    pub packages: Vec<PackageConfig>,
    /// `(posting, stage) → package` rules (see [`rules`]); none: the trigger stage starts the
    /// connector's default package for every posting.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

fn yes() -> bool {
    true
}

/// One vendor package.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageConfig {
    pub name: String,
    #[serde(default)]
    pub default: bool,
    /// Vendor-specific parameters, e.g. `checks = "criminal_record_check"`.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

impl Config {
    /// Reads, parses and checks a config file, resolving `env:` secrets.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut config = Config::read(path)?;
        config.prepare()?;
        Ok(config)
    }

    /// Reads and parses a config file, without the checks of [`Config::prepare`].
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Resolves secrets and checks invariants that serde cannot express; every problem found
    /// is in the error (see [`Config::problems`]).
    pub fn prepare(&mut self) -> Result<(), ConfigError> {
        ConfigError::all(self.problems()).map_or(Ok(()), Err)
    }

    /// Resolves secrets and returns every problem [`Config::prepare`] refuses, each naming its
    /// setting, so that an operator fixes them all in one go.
    pub fn problems(&mut self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let runtime = [
            self.runtime.limits.check(),
            self.storage.check(),
            (self.runtime.pool).check(&self.runtime.limits),
        ];
        problems.extend(
            runtime
                .into_iter()
                .filter_map(Result::err)
                .map(ConfigError::Runtime),
        );
        if !(0..=19).contains(&self.worker.nice) {
            problems.push(ConfigError::Runtime(format!(
                "worker.nice must be between 0 and 19 (got {})",
                self.worker.nice
            )));
        }
        if let Some(token) = &mut self.server.admin_token {
            match token.resolve() {
                Err(e) => problems.push(e.into()),
                Ok(()) if token.expose().len() < 16 => problems.push(ConfigError::AdminToken),
                Ok(()) => {}
            }
        }
        if let Some(token) = &mut self.server.viewer_token {
            match token.resolve() {
                Err(e) => problems.push(e.into()),
                Ok(()) => {
                    let admin = self.server.admin_token.as_ref().map(|t| t.expose());
                    if token.expose().len() < 16 || admin.is_none() || admin == Some(token.expose())
                    {
                        problems.push(ConfigError::ViewerToken);
                    }
                }
            }
        }
        if let Some(app) = &mut self.lever_oauth {
            if let Err(e) = app.client_secret.resolve() {
                problems.push(e.into());
            }
        }
        if let Some(password) = &mut self.storage.password {
            if let Err(e) = password.resolve() {
                problems.push(e.into());
            }
        }
        let has_app = self.lever_oauth.is_some();
        let mut seen = std::collections::HashSet::new();
        for integration in &mut self.integrations {
            let problem = |p: String| ConfigError::Integration {
                integration: integration.id.clone(),
                problem: p,
            };
            // Resolved first, so the checks see the real values (an `env:` variable may be empty).
            for secret in (integration.ats.section_mut().secrets_mut())
                .into_iter()
                .chain(integration.secrets.values_mut())
            {
                if let Err(e) = secret.resolve() {
                    problems.push(e.into());
                }
            }
            problems.extend(integration.problems().into_iter().map(problem));
            if !has_app && matches!(&integration.ats, AtsConfig::Lever(l) if l.oauth) {
                problems.push(problem(
                    "ats.oauth = true needs the host's Lever OAuth app ([lever_oauth])".into(),
                ));
            }
            if !seen.insert(integration.id.clone()) {
                problems.push(problem("id is used twice".into()));
            }
        }
        problems
    }

    /// The base URL the outside world uses to reach this server.
    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

/// Why `id` cannot name an integration (it appears in URLs and the store), if it cannot.
pub fn id_problem(id: &str) -> Option<&'static str> {
    let valid = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    (!valid).then_some("id must be 1-64 characters of [A-Za-z0-9_-]")
}

impl IntegrationConfig {
    /// Checks what serde cannot (see [`IntegrationConfig::problems`]); every problem, joined.
    pub fn check(&self) -> Result<(), String> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// What serde cannot check: the id's alphabet, the ATS section's own checks, allowed hosts
    /// that are no internal address, exactly one default package, the rules. Every problem.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(p) = id_problem(&self.id) {
            problems.push(p.into());
        }
        if self.connector.is_empty() {
            problems.push("connector must be set".into());
        }
        if let Err(p) = self.ats.section().check() {
            problems.push(p);
        }
        for entry in self.allowed_hosts.iter().flatten() {
            let parsed = match crate::wasm::policy::HostEntry::parse(entry) {
                Ok(parsed) => parsed,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let internal = parsed
                .ip()
                .and_then(|ip| crate::wasm::policy::forbidden(ip, self.allow_loopback));
            if let Some(range) = internal {
                problems.push(crate::wasm::policy::internal_entry(entry, range));
            }
        }
        let defaults = self.packages.iter().filter(|p| p.default).count();
        if !self.packages.is_empty() && defaults != 1 {
            problems.push(format!(
                "exactly one package must be the default, found {defaults}"
            ));
        }
        if let Err(p) = rules::check(&self.rules) {
            problems.push(p);
        }
        problems
    }

    /// A setting as the string a connector sees (`config.get`).
    pub fn setting(&self, key: &str) -> Option<String> {
        self.settings.get(key).map(|v| match v {
            toml::Value::String(s) => s.clone(),
            other => serde_json::to_string(other).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_needs_exactly_one_default_package() {
        let text = include_str!("../../../switchyard.example.toml");
        let mut config: Config = toml::from_str(text).expect("example parses");
        // The example reads secrets from env: provide them.
        for (k, v) in [
            ("LEVER_API_KEY", "k"),
            ("LEVER_SIGNATURE_TOKEN", "t"),
            ("CERTN_API_KEY", "c"),
            ("CERTN_WEBHOOK_SECRET", "w"),
            ("LEVER_JUSTIFACTS_SIGNATURE_TOKEN", "j"),
            ("JUSTIFACTS_API_KEY", "a"),
            ("JUSTIFACTS_WEBHOOK_SECRET", "s"),
            ("GEM_WEBHOOK_SECRET", "g"),
            ("GEM_PREVIOUS_WEBHOOK_SECRET", "p"),
            ("CERTN_GEM_API_KEY", "c2"),
            ("CERTN_GEM_WEBHOOK_SECRET", "w2"),
            ("LEVER_CANDITECH_SIGNATURE_TOKEN", "ct"),
            ("CANDITECH_API_KEY", "ck"),
            ("CANDITECH_WEBHOOK_SECRET", "cw"),
            ("SWITCHYARD_ADMIN_TOKEN", "an-admin-token-of-some-length"),
            ("LEVER_OAUTH_CLIENT_SECRET", "o"),
        ] {
            std::env::set_var(k, v);
        }
        config.prepare().expect("example is valid");
        let canditech = config
            .integrations
            .iter()
            .find(|i| i.connector == "canditech")
            .expect("the example has a Canditech integration");
        assert_eq!(canditech.rules.len(), 2);
        assert_eq!(canditech.rules[1].stage, None, "the trigger stage");
        // Seeds 003 and 004: Canditech and Justifacts customers authorize the app in Lever.
        for connector in ["canditech", "justifacts"] {
            let i = config
                .integrations
                .iter()
                .find(|i| i.connector == connector);
            assert!(
                matches!(i.map(|i| &i.ats), Some(AtsConfig::Lever(l)) if l.oauth && l.api_key.is_none()),
                "{connector} connects as an authorized app"
            );
        }
        let app = config
            .lever_oauth
            .as_ref()
            .expect("the example has a Lever OAuth app");
        assert_eq!(app.client_secret.expose(), "o");
        assert_eq!(app.token_url, "https://auth.lever.co/oauth/token");
        config.integrations[0].packages[0].default = true;
        config.integrations[0].packages[1].default = true;
        assert!(config.prepare().is_err());
    }

    #[test]
    fn an_empty_signing_secret_is_refused_even_through_an_env_variable() {
        let text = r#"
            [[integrations]]
            id = "acme"
            connector = "certn"
            [integrations.ats]
            kind = "lever"
            api_key = "k"
            signature_token = "env:SWITCHYARD_TEST_EMPTY_TOKEN"
        "#;
        std::env::set_var("SWITCHYARD_TEST_EMPTY_TOKEN", "");
        let mut config: Config = toml::from_str(text).expect("parses");
        let error = config.prepare().expect_err("an empty token is refused");
        assert!(error.to_string().contains("signature_token"), "{error}");
        std::env::set_var("SWITCHYARD_TEST_EMPTY_TOKEN", "a-token");
        let mut config: Config = toml::from_str(text).expect("parses");
        config.prepare().expect("a real token is fine");
    }

    #[test]
    fn every_problem_of_a_config_is_reported_at_once_each_naming_its_setting() {
        let text = r#"
            [worker]
            nice = 40
            [[integrations]]
            id = "acme"
            connector = "certn"
            allowed_hosts = ["127.0.0.1:9000", "10.0.0.1"]
            [integrations.ats]
            kind = "lever"
            api_key = "k"
            signature_token = "t"
            [[integrations.packages]]
            name = "A"
            [[integrations]]
            id = "acme"
            connector = ""
            [integrations.ats]
            kind = "lever"
            api_key = "k"
            signature_token = "t"
        "#;
        let mut config: Config = toml::from_str(text).expect("parses");
        let error = config.prepare().expect_err("refused").to_string();
        for named in [
            "6 problems in the configuration",
            "worker.nice",
            "`127.0.0.1:9000` is a loopback address (set allow_loopback = true",
            "`10.0.0.1` is a private address",
            "exactly one package must be the default",
            "connector must be set",
            "id is used twice",
        ] {
            assert!(error.contains(named), "`{named}` missing:\n{error}");
        }
    }

    #[test]
    fn one_integration_never_gets_every_worker_guest_slot_or_guest_thread() {
        let worker = |concurrency, integration_concurrency| WorkerConfig {
            concurrency,
            integration_concurrency,
            ..WorkerConfig::default()
        };
        // The soak's setting: 4 workers, the default 8 per integration → 3.
        assert_eq!(worker(4, 8).effective_integration_concurrency(), 3);
        assert_eq!(worker(2, 8).effective_integration_concurrency(), 1);
        // Already below: as configured (the defaults, 16 and 8, are unchanged).
        assert_eq!(
            WorkerConfig::default().effective_integration_concurrency(),
            8
        );
        assert_eq!(worker(4, 2).effective_integration_concurrency(), 2);
        // One worker: nothing to leave to anyone; as configured.
        assert_eq!(worker(1, 8).effective_integration_concurrency(), 8);

        let limits = |guest_threads, max_concurrent_calls, max_calls_per_integration| {
            limits::SandboxLimits {
                guest_threads,
                max_concurrent_calls,
                max_calls_per_integration,
                ..limits::SandboxLimits::default()
            }
        };
        // The soak's setting: 2 threads, 4 calls per integration → 5 threads.
        let soak = limits(2, 16, 4);
        assert_eq!(
            (
                soak.effective_calls_per_integration(),
                soak.effective_guest_threads()
            ),
            (4, 5)
        );
        // The defaults need no adjusting (no warning at start-up).
        let default = limits::SandboxLimits::default();
        assert_eq!(
            default.effective_guest_threads(),
            default.guest_threads,
            "{default:?}"
        );
        let small = limits(2, 4, 4);
        assert_eq!(
            (
                small.effective_calls_per_integration(),
                small.effective_guest_threads()
            ),
            (3, 4)
        );
        let roomy = limits(8, 16, 4);
        assert_eq!(
            (
                roomy.effective_calls_per_integration(),
                roomy.effective_guest_threads()
            ),
            (4, 8)
        );
        // One thread, one slot: as configured.
        let single = limits(1, 1, 4);
        assert_eq!(
            (
                single.effective_calls_per_integration(),
                single.effective_guest_threads()
            ),
            (4, 1)
        );
    }
}
