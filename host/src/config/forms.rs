//! Integrations as operators manage them through the admin API: the input they send (a partial
//! update; secrets write-only), the view they get back (secrets never, only whether each is set),
//! and the storage form (secrets in clear, for the host's private store only).
//!
//! Config-file integrations and stored ones are merged at start-up: **a stored row wins** over the
//! config file's entry with the same id (an operator's API change outlives a restart), and a
//! stored tombstone hides a config-file integration deleted through the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ats::form::StoredAts;
pub use crate::ats::form::{AtsInput, AtsView};
use crate::ats::section::hook_url;
use crate::config::{IntegrationConfig, PackageConfig, RuleConfig, Secret};
use crate::wasm::connector::Manifest;

/// Why an integration could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    #[error("cannot encode the integration: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Bad admin input.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidIntegration(pub String);

/// The body of a create (all required fields) or an update (only the fields to change).
/// A secret given as `null` is removed; an omitted secret is kept.
#[derive(Debug, Default, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationInput {
    pub id: Option<String>,
    pub connector: Option<String>,
    pub enabled: Option<bool>,
    pub ats: Option<AtsInput>,
    pub allowed_hosts: Option<Vec<String>>,
    /// Lets the connector reach loopback addresses (simulators, tests).
    pub allow_loopback: Option<bool>,
    /// This integration's connector state quota in bytes, instead of
    /// `runtime.limits.state_total_bytes` (`0`: back to that default). Raising it resumes the
    /// events waiting for room.
    pub state_total_bytes: Option<u64>,
    pub settings: Option<BTreeMap<String, serde_json::Value>>,
    pub secrets: Option<BTreeMap<String, Option<String>>>,
    pub packages: Option<Vec<PackageConfig>>,
    /// `(posting, stage) → package` rules; replaces the list (`[]` removes every rule).
    pub rules: Option<Vec<RuleConfig>>,
}

impl IntegrationInput {
    /// A new integration from a create body.
    pub fn create(self) -> Result<IntegrationConfig, InvalidIntegration> {
        let bad = |m: &str| InvalidIntegration(m.to_string());
        let id = self.id.clone().ok_or_else(|| bad("`id` is required"))?;
        let connector = self
            .connector
            .clone()
            .ok_or_else(|| bad("`connector` is required"))?;
        let ats = self.ats.as_ref().ok_or_else(|| bad("`ats` is required"))?;
        let ats = ats.create().map_err(InvalidIntegration)?;
        let base = IntegrationConfig {
            id,
            connector,
            enabled: true,
            ats,
            allowed_hosts: None,
            allow_loopback: false,
            state_total_bytes: None,
            settings: BTreeMap::new(),
            secrets: BTreeMap::new(),
            packages: Vec::new(),
            rules: Vec::new(),
        };
        self.apply(base)
    }

    /// `current` with this update applied. The id cannot change.
    pub fn apply(
        self,
        current: IntegrationConfig,
    ) -> Result<IntegrationConfig, InvalidIntegration> {
        let mut next = current;
        if let Some(id) = self.id.filter(|id| *id != next.id) {
            return Err(InvalidIntegration(format!(
                "the id cannot change (body says `{id}`)"
            )));
        }
        if let Some(c) = self.connector {
            next.connector = c;
        }
        if let Some(e) = self.enabled {
            next.enabled = e;
        }
        if let Some(ats) = self.ats {
            ats.apply(&mut next.ats).map_err(InvalidIntegration)?;
        }
        if let Some(hosts) = self.allowed_hosts {
            next.allowed_hosts = Some(hosts);
        }
        if let Some(lo) = self.allow_loopback {
            next.allow_loopback = lo;
        }
        if let Some(quota) = self.state_total_bytes {
            next.state_total_bytes = (quota > 0).then_some(quota);
        }
        if let Some(settings) = self.settings {
            next.settings = settings
                .into_iter()
                .map(|(k, v)| {
                    toml::Value::try_from(&v)
                        .map(|t| (k.clone(), t))
                        .map_err(|_| {
                            InvalidIntegration(format!(
                                "setting `{k}` must be a string, number, bool or list"
                            ))
                        })
                })
                .collect::<Result<_, _>>()?;
        }
        for (key, value) in self.secrets.unwrap_or_default() {
            match value {
                Some(v) => next.secrets.insert(key, Secret::new(v)),
                None => next.secrets.remove(&key),
            };
        }
        if let Some(packages) = self.packages {
            next.packages = packages;
        }
        if let Some(rules) = self.rules {
            next.rules = rules;
        }
        next.check().map_err(InvalidIntegration)?;
        Ok(next)
    }
}

/// Checks an integration against its connector's manifest: every required field present.
pub fn check_against(
    config: &IntegrationConfig,
    manifest: &Manifest,
) -> Result<(), InvalidIntegration> {
    let missing: Vec<&str> = manifest
        .config_fields
        .iter()
        .filter(|f| f.required)
        .filter(|f| {
            if f.secret {
                !config.secrets.contains_key(&f.key)
            } else {
                !config.settings.contains_key(&f.key)
            }
        })
        .map(|f| f.key.as_str())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(InvalidIntegration(format!(
            "connector `{}` requires {}",
            manifest.id,
            missing.join(", ")
        )))
    }
}

/// What the admin API returns: everything but secret values.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationView {
    pub id: String,
    pub connector: String,
    pub enabled: bool,
    pub ats: AtsView,
    pub allowed_hosts: Option<Vec<String>>,
    pub allow_loopback: bool,
    /// The integration's own state quota, if set (otherwise `runtime.limits.state_total_bytes`).
    pub state_total_bytes: Option<u64>,
    #[schema(value_type = Object)]
    pub settings: BTreeMap<String, toml::Value>,
    /// Names of the secrets that are set (values are write-only).
    pub secrets: Vec<String>,
    /// Each package with `default: true` on exactly one.
    pub packages: Vec<PackageConfig>,
    /// `(posting, stage) → package` rules.
    pub rules: Vec<RuleConfig>,
    /// Where the ATS and the vendor send this integration's webhooks.
    pub webhook_urls: WebhookUrls,
}

/// An integration's inbound URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookUrls {
    /// What the ATS is given, by name (each ATS's `AtsSection::webhook_urls`): `lever`, Lever's
    /// Candidate Stage Change webhook; `gem_api`, the base URL of the Gem API.
    #[serde(flatten)]
    pub ats: BTreeMap<&'static str, String>,
    /// Give this to the vendor (e.g. Certn's webhook URL).
    pub vendor: String,
}

impl IntegrationView {
    /// The view of `c`, reachable at `public_url`.
    pub fn of(c: &IntegrationConfig, public_url: &str) -> IntegrationView {
        IntegrationView {
            id: c.id.clone(),
            connector: c.connector.clone(),
            enabled: c.enabled,
            ats: AtsView::of(&c.ats),
            allowed_hosts: c.allowed_hosts.clone(),
            allow_loopback: c.allow_loopback,
            state_total_bytes: c.state_total_bytes,
            settings: c.settings.clone(),
            secrets: c.secrets.keys().cloned().collect(),
            packages: c.packages.clone(),
            rules: c.rules.clone(),
            webhook_urls: WebhookUrls {
                ats: (c.ats.section().webhook_urls(public_url, &c.id))
                    .into_iter()
                    .collect(),
                vendor: hook_url(public_url, &c.id, "vendor"),
            },
        }
    }
}

/// The storage form: [`IntegrationConfig`] with secrets in clear. Written only to the store;
/// read back with `IntegrationConfig`'s own `Deserialize` (which takes secrets as plain strings).
#[derive(Serialize)]
struct Stored<'a> {
    id: &'a str,
    connector: &'a str,
    enabled: bool,
    ats: StoredAts<'a>,
    allowed_hosts: &'a Option<Vec<String>>,
    allow_loopback: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_total_bytes: Option<u64>,
    settings: &'a BTreeMap<String, toml::Value>,
    secrets: BTreeMap<&'a str, &'a str>,
    packages: &'a [PackageConfig],
    rules: &'a [RuleConfig],
}

/// Serializes `c` for the store, secrets included.
pub fn to_storage(c: &IntegrationConfig) -> Result<String, serde_json::Error> {
    serde_json::to_string(&Stored {
        id: &c.id,
        connector: &c.connector,
        enabled: c.enabled,
        ats: StoredAts::of(&c.ats),
        allowed_hosts: &c.allowed_hosts,
        allow_loopback: c.allow_loopback,
        state_total_bytes: c.state_total_bytes,
        settings: &c.settings,
        secrets: c
            .secrets
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect(),
        packages: &c.packages,
        rules: &c.rules,
    })
}

/// Reads the storage form back.
pub fn from_storage(json: &str) -> Result<IntegrationConfig, serde_json::Error> {
    serde_json::from_str(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AtsConfig;

    #[test]
    fn storage_round_trips_secrets_and_the_view_never_shows_them() {
        let input: IntegrationInput = serde_json::from_value(serde_json::json!({
            "id": "acme", "connector": "certn",
            "ats": {"kind": "lever", "api_key": "lever-key-123", "signature_token": "sig-456"},
            "settings": {"api-base": "http://x", "n": 3},
            "secrets": {"api-key": "vendor-789"},
            "packages": [{"name": "Std", "default": true}, {"name": "Full"}]
        }))
        .unwrap();
        let c = input.create().unwrap();
        let back = from_storage(&to_storage(&c).unwrap()).unwrap();
        assert_eq!(to_storage(&back).unwrap(), to_storage(&c).unwrap());
        let AtsConfig::Lever(l) = &back.ats else {
            panic!("a Lever integration")
        };
        assert_eq!(l.signature_token.expose(), "sig-456");
        let view = serde_json::to_string(&IntegrationView::of(&back, "http://h")).unwrap();
        for secret in ["lever-key-123", "sig-456", "vendor-789"] {
            assert!(!view.contains(secret), "{view}");
        }
    }

    #[test]
    fn two_default_packages_are_refused() {
        let input: IntegrationInput = serde_json::from_value(serde_json::json!({
            "id": "acme", "connector": "certn",
            "ats": {"api_key": "k", "signature_token": "t"},
            "packages": [{"name": "A", "default": true}, {"name": "B", "default": true}]
        }))
        .unwrap();
        assert!(input.create().is_err());
    }

    #[test]
    fn a_gem_integration_round_trips_and_its_secrets_stay_write_only() {
        let input: IntegrationInput = serde_json::from_value(serde_json::json!({
            "id": "acme-gem", "connector": "certn",
            "ats": {"kind": "gem", "webhook_url": "https://gem.example/hook", "webhook_secret": "whsec-1"},
            "secrets": {"api-key": "vendor-789"},
        }))
        .unwrap();
        let c = input.create().unwrap();
        let rotate: IntegrationInput = serde_json::from_value(serde_json::json!({
            "ats": {"webhook_secret": "whsec-2", "previous_webhook_secret": "whsec-1",
                    "previous_secret_expires_at": 1_900_000_000},
        }))
        .unwrap();
        let c = rotate.apply(c).unwrap();
        let back = from_storage(&to_storage(&c).unwrap()).unwrap();
        let AtsConfig::Gem(g) = &back.ats else {
            panic!("a Gem integration")
        };
        assert_eq!(g.webhook_secret.expose(), "whsec-2");
        assert_eq!(
            g.previous_webhook_secret.as_ref().map(Secret::expose),
            Some("whsec-1")
        );
        assert_eq!(g.previous_secret_expires_at, Some(1_900_000_000));
        let view = serde_json::to_value(IntegrationView::of(&back, "http://h")).unwrap();
        assert_eq!(view["webhook_urls"]["gem_api"], "http://h/gem/acme-gem");
        assert!(view["webhook_urls"].get("lever").is_none());
        let text = view.to_string();
        for secret in ["whsec-1", "whsec-2", "vendor-789"] {
            assert!(!text.contains(secret), "{text}");
        }
        // Lever fields on a Gem integration, or a change of kind, are refused.
        let wrong: IntegrationInput =
            serde_json::from_value(serde_json::json!({"ats": {"signature_token": "t"}})).unwrap();
        assert!(wrong.apply(back.clone()).is_err());
        let switch: IntegrationInput =
            serde_json::from_value(serde_json::json!({"ats": {"kind": "lever"}})).unwrap();
        assert!(switch.apply(back).is_err());
    }

    #[test]
    fn empty_signing_secrets_are_refused() {
        for ats in [
            serde_json::json!({"kind": "lever", "api_key": "k", "signature_token": " "}),
            serde_json::json!({"kind": "gem", "webhook_url": "https://g.example/h", "webhook_secret": ""}),
        ] {
            let input: IntegrationInput = serde_json::from_value(
                serde_json::json!({"id": "acme", "connector": "certn", "ats": ats}),
            )
            .unwrap();
            let error = input.create().expect_err("refused").to_string();
            assert!(error.contains("must not be empty"), "{error}");
        }
    }
}
