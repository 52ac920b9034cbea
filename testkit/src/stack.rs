//! The [`Stack`] the demo and the end-to-end tests run on: the Lever and Certn simulators plus a
//! host, all on loopback, wired the way an operator would wire them (Lever's stage-change webhook pointed at
//! the host, Certn's webhook URL pointed at the host's vendor callback URL). The end-to-end tests
//! use the same `Stack`. Optional parts: a second customer on Justifacts, a third on Canditech
//! (rules, scores, verdicts), a Gem integration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use switchyard_sim::canditech::{CanditechOptions, CanditechSim};
use switchyard_sim::certn::{CertnOptions, CertnSim};
use switchyard_sim::justifacts::{JustifactsOptions, JustifactsSim};
use switchyard_sim::lever::{LeverSim, NewOpportunity, Opportunity};

use switchyard_sim::gem::{GemOptions, GemSim};

use switchyard::config::{
    AtsConfig, Config, GemConfig, IntegrationConfig, LeverConfig, PackageConfig, RuleConfig,
    RuntimeConfig, Secret, ServerConfig, StorageConfig, WorkerConfig,
};
use switchyard::RunningHost;

/// The Certn integration's id in a [`Stack`].
pub const CERTN: &str = "demo-certn";
/// The Justifacts integration's id in a [`Stack`] (when enabled).
pub const JUSTIFACTS: &str = "demo-justifacts";
/// The Canditech integration's id in a [`Stack`] (when enabled).
pub const CANDITECH: &str = "demo-canditech";
/// The Lever stage the Canditech customer added to its pipeline (the connector's default trigger).
pub const CANDITECH_STAGE: &str = "Canditech Stage";
/// The posting the Canditech customer attached an assessment to.
pub const PYTHON_POSTING: &str = "Python Developer";
/// The assessment attached to ([`PYTHON_POSTING`], [`CANDITECH_STAGE`]).
pub const PYTHON_ASSESSMENT: &str = "Python senior";
/// The Gem integration's id in a [`Stack`] started with [`StackOptions::gem`].
pub const GEM: &str = "demo-gem";
/// The Lever stage that triggers Certn.
pub const TRIGGER: &str = "Background Check";

/// The API key permissions `docs/lever.md` tells a Certn customer to grant — seed 001's key:
/// read/write opportunities (tags and links live on the opportunity), read stages. Spelled out
/// here, not taken from the host, so a call needing more fails the tests.
pub const CERTN_KEY: [&str; 3] = [
    "opportunities:read:admin",
    "opportunities:write:admin",
    "stages:read:admin",
];
/// The same plus notes (the secret result note; read only to check an interrupted write): a
/// Justifacts customer's key.
pub const JUSTIFACTS_KEY: [&str; 5] = [
    "opportunities:read:admin",
    "opportunities:write:admin",
    "stages:read:admin",
    "notes:write:admin",
    "notes:read:admin",
];
/// The same plus reading postings (its rule names a posting): a Canditech customer's key.
pub const CANDITECH_KEY: [&str; 6] = [
    "opportunities:read:admin",
    "opportunities:write:admin",
    "stages:read:admin",
    "notes:write:admin",
    "notes:read:admin",
    "postings:read:admin",
];

/// How to build a [`Stack`].
pub struct StackOptions {
    pub connectors_dir: PathBuf,
    pub data_dir: PathBuf,
    pub certn: CertnOptions,
    pub worker: WorkerConfig,
    pub runtime: RuntimeConfig,
    /// `[storage]` but its path (always `<data_dir>/switchyard.db`): retention settings.
    pub storage: StorageConfig,
    /// Extra integrations on the same Lever account: (id, connector id, trigger stage name).
    pub extra: Vec<(String, String, String)>,
    /// Fixed listen address (to restart a host on the same URL); default: any loopback port.
    pub listen: Option<std::net::SocketAddr>,
    /// Also run a second customer: its own Lever account wired to Justifacts.
    pub justifacts: Option<JustifactsOptions>,
    /// Connect the Justifacts customer's Lever account through the host's Lever OAuth app, as
    /// seed 004 does ("Activate Lever → sign in → Accept"), instead of an API key; then
    /// [`Stack::connect_justifacts`] does the connect dance. One OAuth customer per stack.
    pub justifacts_oauth: bool,
    /// Also run a Gem integration ([`GEM`]) on the same host, wired to the Gem simulator and to
    /// a second Certn team (Certn sends all of a team's callbacks to one URL).
    pub gem: Option<GemSetup>,
    /// Also run a third customer: its own Lever account wired to Canditech ([`CANDITECH`]).
    pub canditech: Option<CanditechSetup>,
    /// A temporary directory (usually holding `data_dir`) the stack owns: removed when the
    /// stack drops, after its host.
    pub scratch: Option<tempfile::TempDir>,
}

/// How the Canditech customer of a [`Stack`] is set up.
#[derive(Clone, Debug)]
pub struct CanditechSetup {
    pub options: CanditechOptions,
    /// The integration's rules; [`CanditechSetup::new`] attaches [`PYTHON_ASSESSMENT`] to
    /// ([`PYTHON_POSTING`], [`CANDITECH_STAGE`]).
    pub rules: Vec<RuleConfig>,
    /// Connect this customer's Lever account through the host's Lever OAuth app (the seed's
    /// "Connect → log into Lever → Accept") instead of an API key: the stack registers the app in
    /// the customer's Lever simulator, and [`Stack::connect_canditech`] does the connect dance.
    pub oauth: bool,
}

impl CanditechSetup {
    /// The simulator with `options` and the seed's one rule.
    pub fn new(options: CanditechOptions) -> CanditechSetup {
        CanditechSetup {
            options,
            rules: vec![RuleConfig {
                posting: Some(PYTHON_POSTING.into()),
                stage: Some(CANDITECH_STAGE.into()),
                package: PYTHON_ASSESSMENT.into(),
            }],
            oauth: false,
        }
    }
}

/// The third customer: its own Lever account and a Canditech account.
pub struct CanditechCustomer {
    pub lever: LeverSim,
    pub sim: CanditechSim,
}

/// How the Gem integration of a [`Stack`] signs its webhooks.
#[derive(Clone, Debug)]
pub struct GemSetup {
    /// The integration's current webhook secret; the Gem simulator starts out verifying with it.
    pub webhook_secret: String,
    /// A previous secret and the end of its overlap window (unix seconds), to test rotation.
    pub previous: Option<(String, i64)>,
}

impl Default for GemSetup {
    fn default() -> Self {
        GemSetup {
            webhook_secret: format!("gemsecret-{}", uuid::Uuid::new_v4().simple()),
            previous: None,
        }
    }
}

/// The Gem side of a [`Stack`]: the Gem simulator and the Certn team its integration uses.
pub struct GemSide {
    pub sim: GemSim,
    pub certn: CertnSim,
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
            storage: StorageConfig::default(),
            extra: Vec::new(),
            listen: None,
            justifacts: None,
            justifacts_oauth: false,
            gem: None,
            canditech: None,
            scratch: None,
        }
    }
}

/// Simulators and a host, wired together.
pub struct Stack {
    pub lever: LeverSim,
    pub certn: CertnSim,
    /// The Justifacts customer, when [`StackOptions::justifacts`] was set.
    pub justifacts: Option<JustifactsCustomer>,
    pub host: Option<RunningHost>,
    /// The configuration the host runs with (also usable for `switchyard serve` in a subprocess).
    pub config: Config,
    pub addr: std::net::SocketAddr,
    /// Present when started with [`StackOptions::gem`].
    pub gem: Option<GemSide>,
    /// The Canditech customer, when [`StackOptions::canditech`] was set.
    pub canditech: Option<CanditechCustomer>,
    /// [`StackOptions::scratch`]; last, so that it goes after the host.
    _scratch: Option<tempfile::TempDir>,
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
            None => crate::ports::free_loopback_addr()?,
        };
        let base = format!("http://{addr}");
        let certn_secrets = [
            ("api-key", certn.api_key()),
            ("webhook-secret", certn.webhook_secret()),
        ];
        let mut integrations = vec![integration(
            &lever,
            &base,
            Wiring {
                id: CERTN,
                connector: "certn",
                trigger: Some(TRIGGER),
                vendor_base: &certn.api_base(),
                settings: &[],
                secrets: &certn_secrets,
                packages: package_configs(&opts.certn.packages),
                rules: Vec::new(),
                key: &CERTN_KEY,
            },
        )];
        for (id, connector, trigger) in &opts.extra {
            integrations.push(integration(
                &lever,
                &base,
                Wiring {
                    id,
                    connector,
                    trigger: Some(trigger),
                    vendor_base: &certn.api_base(),
                    settings: &[],
                    secrets: &[],
                    packages: Vec::new(),
                    rules: Vec::new(),
                    key: &CERTN_KEY,
                },
            ));
        }
        certn.set_webhook_url(&format!("{base}/hooks/{CERTN}/vendor"));
        // The host's Lever OAuth app, registered in the Lever account of the customer that
        // connects through OAuth (one app, one Lever account per stack).
        let mut lever_oauth = None;
        let justifacts = match opts.justifacts.clone() {
            Some(jf_opts) => {
                let customer = JustifactsCustomer {
                    lever: LeverSim::start().await?,
                    sim: JustifactsSim::start(jf_opts).await?,
                };
                let jf = &customer.sim;
                integrations.push(integration(
                    &customer.lever,
                    &base,
                    Wiring {
                        id: JUSTIFACTS,
                        connector: "justifacts",
                        // None: the connector's default trigger stage ("Background Check").
                        trigger: None,
                        vendor_base: &jf.api_base(),
                        settings: &[("client-code", jf.client_code())],
                        secrets: &[
                            ("api-key", jf.api_key()),
                            ("webhook-secret", jf.webhook_secret()),
                        ],
                        packages: Vec::new(),
                        rules: Vec::new(),
                        key: &JUSTIFACTS_KEY,
                    },
                ));
                if opts.justifacts_oauth {
                    lever_oauth = Some(crate::lever_oauth::simulator_app(&customer.lever, &base));
                    use_oauth(integrations.last_mut());
                }
                Some(customer)
            }
            None => None,
        };
        let canditech = match &opts.canditech {
            Some(setup) => {
                let customer = CanditechCustomer {
                    lever: LeverSim::start().await?,
                    sim: CanditechSim::start(setup.options.clone()).await?,
                };
                // The seed: "Add Canditech stage to Lever pipeline".
                customer.lever.add_stage(CANDITECH_STAGE);
                let sim = &customer.sim;
                sim.set_webhook_url(&format!("{base}/hooks/{CANDITECH}/vendor"));
                integrations.push(integration(
                    &customer.lever,
                    &base,
                    Wiring {
                        id: CANDITECH,
                        connector: "canditech",
                        // None: the connector's default trigger stage ("Canditech Stage").
                        trigger: None,
                        vendor_base: &sim.api_base(),
                        settings: &[],
                        secrets: &[
                            ("api-key", sim.api_key()),
                            ("webhook-secret", sim.webhook_secret()),
                        ],
                        packages: Vec::new(),
                        rules: setup.rules.clone(),
                        key: &CANDITECH_KEY,
                    },
                ));
                if setup.oauth {
                    anyhow::ensure!(
                        lever_oauth.is_none(),
                        "one customer per stack connects through the Lever OAuth app"
                    );
                    lever_oauth = Some(crate::lever_oauth::simulator_app(&customer.lever, &base));
                    use_oauth(integrations.last_mut());
                }
                Some(customer)
            }
            None => None,
        };
        let gem = match &opts.gem {
            Some(setup) => {
                let (side, integration) = gem_integration(setup, &opts.certn, &base).await?;
                integrations.push(integration);
                Some(side)
            }
            None => None,
        };
        // The operator approves the simulators' addresses.
        let mut runtime = opts.runtime;
        for host in integrations
            .iter()
            .flat_map(|i| i.allowed_hosts.iter().flatten())
        {
            if !runtime.approved_hosts.contains(host) {
                runtime.approved_hosts.push(host.clone());
            }
        }
        let config = Config {
            server: ServerConfig {
                listen: addr.to_string(),
                ..ServerConfig::default()
            },
            storage: StorageConfig {
                path: opts.data_dir.join("switchyard.db"),
                url: crate::pg::stack_database(),
                ..opts.storage
            },
            runtime,
            worker: opts.worker,
            integrations,
            lever_oauth,
        };
        Ok(Stack {
            lever,
            certn,
            justifacts,
            host: None,
            config,
            addr,
            gem,
            canditech,
            _scratch: opts.scratch,
        })
    }

    /// Starts (or restarts) the in-process host with the stack's config.
    pub async fn run(mut self) -> anyhow::Result<Stack> {
        let listener = tokio::net::TcpListener::bind(self.addr).await?;
        self.host = Some(switchyard::start_on(self.config.clone(), listener).await?);
        Ok(self)
    }

    /// The running host.
    pub fn host(&self) -> &RunningHost {
        self.host.as_ref().expect("the stack's host is running")
    }

    /// The seed's "Connect → log into Lever → Accept" for the Canditech customer set up with
    /// [`CanditechSetup::oauth`]: follows the host's connect link to the Lever simulator's
    /// authorize page, approves, and comes back through the host's OAuth callback. Returns the
    /// callback's answer (`{"status":"connected",...}`).
    pub async fn connect_canditech(&self) -> anyhow::Result<serde_json::Value> {
        crate::lever_oauth::browser_connect(&self.host().app, CANDITECH).await
    }

    /// The same connect dance for the Justifacts customer set up with
    /// [`StackOptions::justifacts_oauth`] (seed 004's "Activate Lever → sign in → Accept").
    pub async fn connect_justifacts(&self) -> anyhow::Result<serde_json::Value> {
        crate::lever_oauth::browser_connect(&self.host().app, JUSTIFACTS).await
    }

    /// The Gem side; fails when the stack was started without [`StackOptions::gem`].
    pub fn gem(&self) -> anyhow::Result<&GemSide> {
        self.gem
            .as_ref()
            .context("the stack was started without a Gem integration")
    }

    /// The base URL Gem calls (`http://<host>`; the API is under `/gem/<integration>/`).
    pub fn host_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Issues a Gem API key for the [`GEM`] integration, as `switchyard gem issue-key` does.
    pub fn gem_issue_key(&self) -> anyhow::Result<switchyard::ats::gem::keys::IssuedKey> {
        Ok(switchyard::ats::gem::keys::issue(
            &self.host().app.store,
            GEM,
        )?)
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

    /// Adds `n` candidates named `{name} {i}` with the email `{email}{i}@example.com`; returns
    /// their opportunity ids in order.
    pub fn candidates(&self, n: usize, name: &str, email: &str) -> Vec<String> {
        (0..n)
            .map(|i| {
                self.candidate(
                    &format!("{name} {i}"),
                    Some(&format!("{email}{i}@example.com")),
                    &[],
                    None,
                )
            })
            .collect()
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
        wait_for(&self.lever, opportunity, within, done).await
    }
}

/// Waits (bounded) until an opportunity in `lever` satisfies `done`; returns its last snapshot.
pub async fn wait_for(
    lever: &LeverSim,
    opportunity: &str,
    within: Duration,
    done: impl Fn(&Opportunity) -> bool,
) -> anyhow::Result<Opportunity> {
    let deadline = Instant::now() + within;
    loop {
        let opp = lever
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

/// A second customer: its own Lever account and a Justifacts client account.
pub struct JustifactsCustomer {
    pub lever: LeverSim,
    pub sim: JustifactsSim,
}

/// How one integration of a [`Stack`] is wired.
struct Wiring<'a> {
    id: &'a str,
    connector: &'a str,
    trigger: Option<&'a str>,
    vendor_base: &'a str,
    settings: &'a [(&'a str, String)],
    secrets: &'a [(&'a str, String)],
    packages: Vec<PackageConfig>,
    rules: Vec<RuleConfig>,
    /// The permissions of the API key generated for the integration.
    key: &'a [&'a str],
}

/// Registers the integration's webhook in `lever` (as an operator would paste the URL) and builds
/// its config.
fn integration(lever: &LeverSim, base: &str, w: Wiring<'_>) -> IntegrationConfig {
    let token = lever.register_webhook(
        "candidateStageChange",
        &format!("{base}/hooks/{}/lever", w.id),
    );
    let stage = w.trigger.unwrap_or(TRIGGER);
    if lever.stage_id(stage).is_none() {
        lever.add_stage(stage);
    }
    let mut settings = BTreeMap::from([(
        "api-base".to_string(),
        toml::Value::String(w.vendor_base.to_string()),
    )]);
    for (k, v) in w.settings {
        settings.insert(k.to_string(), toml::Value::String(v.clone()));
    }
    IntegrationConfig {
        id: w.id.into(),
        connector: w.connector.into(),
        enabled: true,
        ats: AtsConfig::Lever(LeverConfig {
            api_base: lever.api_base(),
            api_key: Some(Secret::new(lever.generate_api_key(w.key))),
            oauth_access_token: None,
            oauth: false,
            signature_token: Secret::new(token),
            trigger_stage: w.trigger.map(str::to_string),
        }),
        allowed_hosts: Some(vec![host_of(w.vendor_base)]),
        // The simulators listen on loopback.
        allow_loopback: true,
        state_total_bytes: None,
        settings,
        secrets: w
            .secrets
            .iter()
            .map(|(k, v)| (k.to_string(), Secret::new(v.clone())))
            .collect(),
        packages: w.packages,
        rules: w.rules,
    }
}

/// Switches a Lever integration from the API key to the host's Lever OAuth app.
fn use_oauth(integration: Option<&mut IntegrationConfig>) {
    if let Some(AtsConfig::Lever(lever)) = integration.map(|i| &mut i.ats) {
        lever.api_key = None;
        lever.oauth = true;
    }
}

/// Starts the Gem simulator and a second Certn team, and configures the Gem integration.
async fn gem_integration(
    setup: &GemSetup,
    certn: &CertnOptions,
    base: &str,
) -> anyhow::Result<(GemSide, IntegrationConfig)> {
    let sim = GemSim::start(GemOptions {
        secrets: vec![setup.webhook_secret.clone()],
    })
    .await?;
    let team = CertnSim::start(certn.clone()).await?;
    team.set_webhook_url(&format!("{base}/hooks/{GEM}/vendor"));
    let integration = IntegrationConfig {
        id: GEM.into(),
        connector: "certn".into(),
        enabled: true,
        ats: AtsConfig::Gem(GemConfig {
            webhook_url: sim.webhook_url(),
            webhook_secret: Secret::new(setup.webhook_secret.clone()),
            previous_webhook_secret: setup.previous.as_ref().map(|(s, _)| Secret::new(s.clone())),
            previous_secret_expires_at: setup.previous.as_ref().map(|(_, t)| *t),
        }),
        allowed_hosts: Some(vec![host_of(&team.api_base())]),
        allow_loopback: true,
        state_total_bytes: None,
        settings: BTreeMap::from([("api-base".to_string(), toml::Value::String(team.api_base()))]),
        secrets: BTreeMap::from([
            ("api-key".to_string(), Secret::new(team.api_key())),
            (
                "webhook-secret".to_string(),
                Secret::new(team.webhook_secret()),
            ),
        ]),
        packages: package_configs(&certn.packages),
        rules: Vec::new(),
    };
    Ok((GemSide { sim, certn: team }, integration))
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
