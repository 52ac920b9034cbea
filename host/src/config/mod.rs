//! The configuration file (`switchyard serve --config <file>`), TOML. `switchyard.example.toml` at
//! the repository root documents every setting.
//!
//! Secrets may be written inline or as `env:NAME` to read them from the environment at start-up;
//! either way they are held in [`Secret`], whose `Debug` never prints the value.

pub mod forms;
pub mod limits;
pub mod rules;

pub use rules::RuleConfig;

use std::collections::BTreeMap;
use std::fmt;
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
    #[error("environment variable `{0}` named by a secret is not set")]
    MissingEnv(String),
    #[error("server.admin_token must be at least 16 characters")]
    AdminToken,
    #[error("{0}")]
    Runtime(String),
}

/// A secret value (API key, signing token). Never printed by `Debug`, never serialized in clear.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that needs it (signing, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Resolves `env:NAME` indirection.
    pub(crate) fn resolve(&mut self) -> Result<(), ConfigError> {
        if let Some(name) = self.0.strip_prefix("env:") {
            let name = name.to_string();
            self.0 = std::env::var(&name).map_err(|_| ConfigError::MissingEnv(name))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
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

/// `[lever_oauth]`: the one Lever OAuth app (partner app) of this host. Every Lever integration
/// with `ats.oauth = true` is connected through it (see `crate::ats::lever::oauth`). The redirect
/// URI to register with Lever is `<public_url>/oauth/lever/callback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeverOAuthConfig {
    /// The app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Lever's authorize page.
    #[serde(default = "lever_authorize_url")]
    pub authorize_url: String,
    /// Lever's token endpoint (code exchange and refresh).
    #[serde(default = "lever_token_url")]
    pub token_url: String,
    /// Lever's RFC 7009 revocation endpoint (used when an operator disconnects).
    #[serde(default = "lever_revoke_url")]
    pub revoke_url: String,
    /// The `audience` parameter of the authorize request.
    #[serde(default = "lever_audience")]
    pub audience: String,
    /// Scopes asked for; `offline_access` (for a refresh token) is always added.
    #[serde(default = "lever_scopes")]
    pub scopes: Vec<String>,
    /// How long a connect link (its `state`) stays usable.
    #[serde(default = "state_ttl")]
    pub state_ttl_secs: u64,
    /// An access token this close to its expiry is refreshed before use.
    #[serde(default = "refresh_margin")]
    pub refresh_margin_secs: u64,
}

impl LeverOAuthConfig {
    /// The app `client_id` / `client_secret` on Lever's real endpoints, with the default scopes
    /// and lifetimes.
    pub fn new(client_id: &str, client_secret: &str) -> LeverOAuthConfig {
        LeverOAuthConfig {
            client_id: client_id.to_string(),
            client_secret: Secret::new(client_secret),
            authorize_url: lever_authorize_url(),
            token_url: lever_token_url(),
            revoke_url: lever_revoke_url(),
            audience: lever_audience(),
            scopes: lever_scopes(),
            state_ttl_secs: state_ttl(),
            refresh_margin_secs: refresh_margin(),
        }
    }
}

fn lever_authorize_url() -> String {
    "https://auth.lever.co/authorize".into()
}
fn lever_token_url() -> String {
    "https://auth.lever.co/oauth/token".into()
}
fn lever_revoke_url() -> String {
    "https://auth.lever.co/oauth/revoke".into()
}
fn lever_audience() -> String {
    "https://api.lever.co/v1/".into()
}
fn lever_scopes() -> Vec<String> {
    [
        "opportunities:read:admin",
        "opportunities:write:admin",
        "notes:write:admin",
        "stages:read:admin",
        "tags:read:admin",
        "postings:read:admin",
    ]
    .map(String::from)
    .to_vec()
}
fn state_ttl() -> u64 {
    600
}
fn refresh_margin() -> u64 {
    300
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
            admin_max_upload_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `[storage]`: the embedded SQLite database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Database file; created with its directory if missing.
    pub path: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            path: PathBuf::from("data/switchyard.db"),
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

impl RuntimeConfig {
    /// The sandbox caps these settings give.
    pub fn caps(&self) -> crate::wasm::runtime::Caps {
        crate::wasm::runtime::Caps {
            max_memory_mib: self.max_memory_mib,
            max_instances: self.max_instances,
            default_memory_mib: self.memory_mb,
        }
    }
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
    /// most this many workers; the others keep serving other integrations).
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
    /// How long an open breaker waits before letting one probe event through (half-open).
    pub breaker_open_secs: u64,
    /// On SIGTERM/SIGINT: how long events in flight may take to finish; those still running
    /// then are handed back to the queue (not counted as an attempt).
    pub shutdown_grace_secs: u64,
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
            breaker_open_secs: 30,
            shutdown_grace_secs: 20,
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

/// The ATS an integration serves.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AtsConfig {
    /// Lever: stage-change webhooks in, REST API writes out.
    Lever(LeverConfig),
    /// Gem: Gem calls switchyard's Gem API (`/gem/<id>/...`) to list packages and send checks;
    /// status changes go back to Gem as signed webhooks.
    Gem(GemConfig),
}

impl AtsConfig {
    /// `lever` or `gem`, as written in the config.
    pub fn kind(&self) -> &'static str {
        match self {
            AtsConfig::Lever(_) => "lever",
            AtsConfig::Gem(_) => "gem",
        }
    }
}

/// Gem: where its status webhooks go and the secret(s) that sign them. The API keys Gem uses to
/// call switchyard are issued by `switchyard gem issue-key` and live in the store, not here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GemConfig {
    /// Gem's webhook handler URL (the "Webhook URL" Gem gives the vendor).
    pub webhook_url: String,
    /// Signs status webhooks (Standard Webhooks, HMAC-SHA256). Pasted into Gem.
    pub webhook_secret: Secret,
    /// During a rotation: the secret Gem may still be verifying with. Until
    /// `previous_secret_expires_at`, every webhook carries a signature by each secret.
    #[serde(default)]
    pub previous_webhook_secret: Option<Secret>,
    /// End of the rotation overlap: RFC 3339 text, a TOML datetime, or unix seconds. Required
    /// with `previous_webhook_secret`.
    #[serde(default, deserialize_with = "crate::clock::deserialize_opt_unix_secs")]
    pub previous_secret_expires_at: Option<i64>,
}

impl GemConfig {
    /// The secrets that sign a webhook sent at `now_secs`: the current one, plus the previous one
    /// while the overlap window lasts.
    pub fn signing_secrets(&self, now_secs: i64) -> Vec<&Secret> {
        let mut secrets = vec![&self.webhook_secret];
        if let (Some(prev), Some(until)) = (
            &self.previous_webhook_secret,
            self.previous_secret_expires_at,
        ) {
            if now_secs < until {
                secrets.push(prev);
            }
        }
        secrets
    }
}

/// Lever credentials and the trigger stage.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeverConfig {
    /// `https://api.lever.co/v1` in production.
    #[serde(default = "lever_api_base")]
    pub api_base: String,
    /// Lever API key (HTTP Basic username). Give this or `oauth_access_token`.
    #[serde(default)]
    pub api_key: Option<Secret>,
    /// An access token of a Lever OAuth app, sent as `Authorization: Bearer`, instead of an API
    /// key. switchyard does not refresh it: update it (admin API or config) before it expires.
    #[serde(default)]
    pub oauth_access_token: Option<Secret>,
    /// Connect through the host's Lever OAuth app (`[lever_oauth]`) instead: tokens come from
    /// the authorization-code flow and live in the store, refreshed by the host.
    #[serde(default)]
    pub oauth: bool,
    /// The Candidate Stage Change webhook's signature token.
    pub signature_token: Secret,
    /// Name of the stage that starts a screening; defaults to the connector's default trigger.
    #[serde(default)]
    pub trigger_stage: Option<String>,
}

impl LeverConfig {
    /// How to authenticate to Lever: the API key, the static OAuth access token, or the OAuth
    /// app, whichever one is set (`None` if none or several are).
    pub fn auth(&self) -> Option<LeverAuth> {
        let set = |s: &Option<Secret>| s.clone().filter(|s| !s.expose().is_empty());
        match (
            set(&self.api_key),
            set(&self.oauth_access_token),
            self.oauth,
        ) {
            (Some(key), None, false) => Some(LeverAuth::ApiKey(key)),
            (None, Some(token), false) => Some(LeverAuth::Bearer(token)),
            (None, None, true) => Some(LeverAuth::OAuth),
            _ => None,
        }
    }
}

/// A Lever credential.
#[derive(Debug, Clone)]
pub enum LeverAuth {
    /// An API key: HTTP Basic, the key as user name, empty password.
    ApiKey(Secret),
    /// An OAuth access token: `Authorization: Bearer`.
    Bearer(Secret),
    /// Tokens of the host's OAuth app, from the store (`crate::ats::lever::oauth`).
    OAuth,
}

fn lever_api_base() -> String {
    "https://api.lever.co/v1".into()
}

/// One vendor package.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        config.prepare()?;
        Ok(config)
    }

    /// Resolves secrets and checks invariants that serde cannot express.
    pub fn prepare(&mut self) -> Result<(), ConfigError> {
        self.runtime.limits.check().map_err(ConfigError::Runtime)?;
        if !(0..=19).contains(&self.worker.nice) {
            return Err(ConfigError::Runtime(format!(
                "worker.nice must be between 0 and 19 (got {})",
                self.worker.nice
            )));
        }
        (self.runtime.pool)
            .check(&self.runtime.limits)
            .map_err(ConfigError::Runtime)?;
        if let Some(token) = &mut self.server.admin_token {
            token.resolve()?;
            if token.expose().len() < 16 {
                return Err(ConfigError::AdminToken);
            }
        }
        if let Some(app) = &mut self.lever_oauth {
            app.client_secret.resolve()?;
        }
        let has_app = self.lever_oauth.is_some();
        let mut seen = std::collections::HashSet::new();
        for integration in &mut self.integrations {
            let problem = |p: String| ConfigError::Integration {
                integration: integration.id.clone(),
                problem: p,
            };
            // Resolved first, so the checks see the real values (an `env:` variable may be empty).
            let ats_secrets: Vec<&mut Secret> = match &mut integration.ats {
                AtsConfig::Lever(l) => [&mut l.api_key, &mut l.oauth_access_token]
                    .into_iter()
                    .flatten()
                    .chain([&mut l.signature_token])
                    .collect(),
                AtsConfig::Gem(g) => [&mut g.previous_webhook_secret]
                    .into_iter()
                    .flatten()
                    .chain([&mut g.webhook_secret])
                    .collect(),
            };
            for secret in ats_secrets
                .into_iter()
                .chain(integration.secrets.values_mut())
            {
                secret.resolve()?;
            }
            integration.check().map_err(problem)?;
            if !has_app && matches!(&integration.ats, AtsConfig::Lever(l) if l.oauth) {
                return Err(problem(
                    "ats.oauth = true needs the host's Lever OAuth app ([lever_oauth])".into(),
                ));
            }
            if !seen.insert(integration.id.clone()) {
                return Err(problem("id is used twice".into()));
            }
        }
        Ok(())
    }

    /// The base URL the outside world uses to reach this server.
    pub fn public_url(&self, bound: std::net::SocketAddr) -> String {
        match &self.server.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => format!("http://{bound}"),
        }
    }
}

impl IntegrationConfig {
    /// Checks what serde cannot: the id's alphabet and exactly one default package.
    pub fn check(&self) -> Result<(), String> {
        if self.id.is_empty()
            || self.id.len() > 64
            || !self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err("id must be 1-64 characters of [A-Za-z0-9_-]".into());
        }
        if self.connector.is_empty() {
            return Err("connector must be set".into());
        }
        // An HMAC keyed with an empty secret is no authentication at all.
        let empty = |s: &Secret| s.expose().trim().is_empty();
        match &self.ats {
            AtsConfig::Lever(lever) => {
                if lever.auth().is_none() {
                    return Err(
                        "ats needs exactly one of api_key, oauth_access_token (non-empty) and oauth = true"
                            .into(),
                    );
                }
                if empty(&lever.signature_token) {
                    return Err("ats.signature_token must not be empty".into());
                }
            }
            AtsConfig::Gem(gem) => {
                if !gem.webhook_url.starts_with("http://")
                    && !gem.webhook_url.starts_with("https://")
                {
                    return Err("ats.webhook_url must be an http(s) URL".into());
                }
                if empty(&gem.webhook_secret)
                    || gem.previous_webhook_secret.as_ref().is_some_and(empty)
                {
                    return Err(
                        "ats.webhook_secret and ats.previous_webhook_secret must not be empty"
                            .into(),
                    );
                }
                if gem.previous_webhook_secret.is_some() && gem.previous_secret_expires_at.is_none()
                {
                    return Err(
                        "ats.previous_webhook_secret needs previous_secret_expires_at (end of the overlap)"
                            .into(),
                    );
                }
            }
        }
        for entry in self.allowed_hosts.iter().flatten() {
            let parsed = crate::wasm::policy::HostEntry::parse(entry)?;
            let internal = parsed
                .ip()
                .and_then(|ip| crate::wasm::policy::forbidden(ip, self.allow_loopback));
            if let Some(range) = internal {
                return Err(format!(
                    "allowed_hosts entry `{entry}` is a {range} address{}",
                    if range == "loopback" {
                        " (set allow_loopback = true for a local simulator)"
                    } else {
                        ""
                    }
                ));
            }
        }
        let defaults = self.packages.iter().filter(|p| p.default).count();
        if !self.packages.is_empty() && defaults != 1 {
            return Err(format!(
                "exactly one package must be the default, found {defaults}"
            ));
        }
        rules::check(&self.rules)?;
        Ok(())
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
    fn secrets_never_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }

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
    fn gem_previous_secret_signs_only_inside_the_overlap_window() {
        let text = r#"
            webhook_url = "https://gem.example/hook"
            webhook_secret = "new"
            previous_webhook_secret = "old"
            previous_secret_expires_at = "2030-01-01T00:00:00Z"
        "#;
        let gem: GemConfig = toml::from_str(text).expect("parses");
        assert_eq!(gem.previous_secret_expires_at, Some(1_893_456_000));
        let names = |now| {
            gem.signing_secrets(now)
                .iter()
                .map(|s| s.expose().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(1_893_455_999), ["new", "old"]);
        assert_eq!(names(1_893_456_000), ["new"]);
        let unix: GemConfig = toml::from_str(
            "webhook_url = \"http://x\"\nwebhook_secret = \"s\"\nprevious_secret_expires_at = 42",
        )
        .expect("parses");
        assert_eq!(unix.previous_secret_expires_at, Some(42));
    }
}
