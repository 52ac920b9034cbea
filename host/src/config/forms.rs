//! Integrations as operators manage them through the admin API: the input they send (a partial
//! update; secrets write-only), the view they get back (secrets never, only whether each is set),
//! and the storage form (secrets in clear, for the host's private store only).
//!
//! Config-file integrations and stored ones are merged at start-up: **a stored row wins** over the
//! config file's entry with the same id (an operator's API change outlives a restart), and a
//! stored tombstone hides a config-file integration deleted through the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{
    AtsConfig, GemConfig, IntegrationConfig, LeverConfig, PackageConfig, RuleConfig, Secret,
};
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
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationInput {
    pub id: Option<String>,
    pub connector: Option<String>,
    pub enabled: Option<bool>,
    pub ats: Option<AtsInput>,
    pub allowed_hosts: Option<Vec<String>>,
    /// Lets the connector reach loopback addresses (simulators, tests).
    pub allow_loopback: Option<bool>,
    pub settings: Option<BTreeMap<String, serde_json::Value>>,
    pub secrets: Option<BTreeMap<String, Option<String>>>,
    pub packages: Option<Vec<PackageConfig>>,
    /// `(posting, stage) → package` rules; replaces the list (`[]` removes every rule).
    pub rules: Option<Vec<RuleConfig>>,
}

/// The ATS part of [`IntegrationInput`]: `kind` is `lever` (the default) or `gem`; each kind
/// takes only its own fields (see `AtsConfig`). The kind of an existing integration cannot change.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AtsInput {
    pub kind: Option<String>,
    // Lever: `api_key` or `oauth_access_token` (setting one replaces the other).
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub oauth_access_token: Option<String>,
    /// `true`: connect through the host's Lever OAuth app (replaces `api_key` /
    /// `oauth_access_token`; the tokens come from `.../lever/connect`).
    pub oauth: Option<bool>,
    pub signature_token: Option<String>,
    pub trigger_stage: Option<String>,
    // Gem.
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// `null` ends a rotation (removes the previous secret).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub previous_webhook_secret: Option<Option<String>>,
    /// Unix seconds; required with `previous_webhook_secret`.
    pub previous_secret_expires_at: Option<i64>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl AtsInput {
    /// The names of the fields given that belong to the other ATS kind.
    fn foreign_fields(&self, kind: &str) -> Vec<&'static str> {
        let lever = [
            ("api_base", self.api_base.is_some()),
            ("api_key", self.api_key.is_some()),
            ("oauth_access_token", self.oauth_access_token.is_some()),
            ("oauth", self.oauth.is_some()),
            ("signature_token", self.signature_token.is_some()),
            ("trigger_stage", self.trigger_stage.is_some()),
        ];
        let gem = [
            ("webhook_url", self.webhook_url.is_some()),
            ("webhook_secret", self.webhook_secret.is_some()),
            (
                "previous_webhook_secret",
                self.previous_webhook_secret.is_some(),
            ),
            (
                "previous_secret_expires_at",
                self.previous_secret_expires_at.is_some(),
            ),
        ];
        let other: &[(&str, bool)] = if kind == "gem" { &lever } else { &gem };
        other
            .iter()
            .filter(|(_, set)| *set)
            .map(|(n, _)| *n)
            .collect()
    }
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
        let ats = match ats.kind.as_deref().unwrap_or("lever") {
            "lever" => AtsConfig::Lever(LeverConfig {
                api_base: "https://api.lever.co/v1".into(),
                api_key: ats.api_key.clone().map(Secret::new),
                oauth_access_token: ats.oauth_access_token.clone().map(Secret::new),
                oauth: ats.oauth.unwrap_or(false),
                signature_token: Secret::new(
                    ats.signature_token
                        .clone()
                        .ok_or_else(|| bad("`ats.signature_token` is required"))?,
                ),
                trigger_stage: None,
            }),
            "gem" => AtsConfig::Gem(GemConfig {
                webhook_url: ats
                    .webhook_url
                    .clone()
                    .ok_or_else(|| bad("`ats.webhook_url` is required"))?,
                webhook_secret: Secret::new(
                    ats.webhook_secret
                        .clone()
                        .ok_or_else(|| bad("`ats.webhook_secret` is required"))?,
                ),
                previous_webhook_secret: None,
                previous_secret_expires_at: None,
            }),
            other => {
                return Err(InvalidIntegration(format!(
                    "`ats.kind` must be `lever` or `gem`, not `{other}`"
                )))
            }
        };
        let base = IntegrationConfig {
            id,
            connector,
            enabled: true,
            ats,
            allowed_hosts: None,
            allow_loopback: false,
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
            let kind = next.ats.kind();
            if ats.kind.as_deref().is_some_and(|k| k != kind) {
                return Err(InvalidIntegration(format!(
                    "`ats.kind` is `{kind}` and cannot change; delete and re-create the integration"
                )));
            }
            let foreign = ats.foreign_fields(kind);
            if !foreign.is_empty() {
                return Err(InvalidIntegration(format!(
                    "a {kind} integration has no `ats.{}`",
                    foreign.join("`, `ats.")
                )));
            }
            match &mut next.ats {
                AtsConfig::Lever(lever) => {
                    if let Some(v) = ats.api_base {
                        lever.api_base = v;
                    }
                    if ats.api_key.is_some()
                        || ats.oauth_access_token.is_some()
                        || ats.oauth.is_some()
                    {
                        lever.api_key = ats.api_key.map(Secret::new);
                        lever.oauth_access_token = ats.oauth_access_token.map(Secret::new);
                        lever.oauth = ats.oauth.unwrap_or(false);
                    }
                    if let Some(v) = ats.signature_token {
                        lever.signature_token = Secret::new(v);
                    }
                    if let Some(v) = ats.trigger_stage {
                        lever.trigger_stage = Some(v).filter(|s| !s.trim().is_empty());
                    }
                }
                AtsConfig::Gem(gem) => {
                    if let Some(v) = ats.webhook_url {
                        gem.webhook_url = v;
                    }
                    if let Some(v) = ats.webhook_secret {
                        gem.webhook_secret = Secret::new(v);
                    }
                    if let Some(v) = ats.previous_webhook_secret {
                        gem.previous_webhook_secret = v.map(Secret::new);
                        if gem.previous_webhook_secret.is_none() {
                            gem.previous_secret_expires_at = None;
                        }
                    }
                    if let Some(v) = ats.previous_secret_expires_at {
                        gem.previous_secret_expires_at = Some(v);
                    }
                }
            }
        }
        if let Some(hosts) = self.allowed_hosts {
            next.allowed_hosts = Some(hosts);
        }
        if let Some(lo) = self.allow_loopback {
            next.allow_loopback = lo;
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
    /// Lever integrations: the connection's state (OAuth grant, disconnection, last Verify
    /// Connection ping), filled in by the admin API from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub connection: Option<serde_json::Value>,
}

/// The ATS part of [`IntegrationView`]: secrets only as "is set" flags.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AtsView {
    Lever {
        api_base: String,
        api_key_set: bool,
        oauth_access_token_set: bool,
        /// Connected through the host's Lever OAuth app.
        oauth: bool,
        signature_token_set: bool,
        trigger_stage: Option<String>,
    },
    Gem {
        webhook_url: String,
        webhook_secret_set: bool,
        previous_webhook_secret_set: bool,
        previous_secret_expires_at: Option<i64>,
    },
}

/// An integration's inbound URLs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookUrls {
    /// Lever integrations: give this to Lever's Candidate Stage Change webhook.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lever: Option<String>,
    /// Gem integrations: the base URL of the Gem API (`/packages`, `/screenings`) to give Gem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gem_api: Option<String>,
    /// Give this to the vendor (e.g. Certn's webhook URL).
    pub vendor: String,
}

impl IntegrationView {
    /// The view of `c`, reachable at `public_url`.
    pub fn of(c: &IntegrationConfig, public_url: &str) -> IntegrationView {
        let (ats, lever_url, gem_url) = match &c.ats {
            AtsConfig::Lever(l) => (
                AtsView::Lever {
                    api_base: l.api_base.clone(),
                    api_key_set: l.api_key.is_some(),
                    oauth_access_token_set: l.oauth_access_token.is_some(),
                    oauth: l.oauth,
                    signature_token_set: !l.signature_token.expose().is_empty(),
                    trigger_stage: l.trigger_stage.clone(),
                },
                Some(format!("{public_url}/hooks/{}/lever", c.id)),
                None,
            ),
            AtsConfig::Gem(g) => (
                AtsView::Gem {
                    webhook_url: g.webhook_url.clone(),
                    webhook_secret_set: !g.webhook_secret.expose().is_empty(),
                    previous_webhook_secret_set: g.previous_webhook_secret.is_some(),
                    previous_secret_expires_at: g.previous_secret_expires_at,
                },
                None,
                Some(format!("{public_url}/gem/{}", c.id)),
            ),
        };
        IntegrationView {
            id: c.id.clone(),
            connector: c.connector.clone(),
            enabled: c.enabled,
            ats,
            allowed_hosts: c.allowed_hosts.clone(),
            allow_loopback: c.allow_loopback,
            settings: c.settings.clone(),
            secrets: c.secrets.keys().cloned().collect(),
            packages: c.packages.clone(),
            rules: c.rules.clone(),
            webhook_urls: WebhookUrls {
                lever: lever_url,
                gem_api: gem_url,
                vendor: format!("{public_url}/hooks/{}/vendor", c.id),
            },
            connection: None,
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
    settings: &'a BTreeMap<String, toml::Value>,
    secrets: BTreeMap<&'a str, &'a str>,
    packages: &'a [PackageConfig],
    rules: &'a [RuleConfig],
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum StoredAts<'a> {
    Lever {
        api_base: &'a str,
        api_key: Option<&'a str>,
        oauth_access_token: Option<&'a str>,
        oauth: bool,
        signature_token: &'a str,
        trigger_stage: &'a Option<String>,
    },
    Gem {
        webhook_url: &'a str,
        webhook_secret: &'a str,
        previous_webhook_secret: Option<&'a str>,
        previous_secret_expires_at: Option<i64>,
    },
}

/// Serializes `c` for the store, secrets included.
pub fn to_storage(c: &IntegrationConfig) -> Result<String, serde_json::Error> {
    let ats = match &c.ats {
        AtsConfig::Lever(l) => StoredAts::Lever {
            api_base: &l.api_base,
            api_key: l.api_key.as_ref().map(Secret::expose),
            oauth_access_token: l.oauth_access_token.as_ref().map(Secret::expose),
            oauth: l.oauth,
            signature_token: l.signature_token.expose(),
            trigger_stage: &l.trigger_stage,
        },
        AtsConfig::Gem(g) => StoredAts::Gem {
            webhook_url: &g.webhook_url,
            webhook_secret: g.webhook_secret.expose(),
            previous_webhook_secret: g.previous_webhook_secret.as_ref().map(Secret::expose),
            previous_secret_expires_at: g.previous_secret_expires_at,
        },
    };
    serde_json::to_string(&Stored {
        id: &c.id,
        connector: &c.connector,
        enabled: c.enabled,
        ats,
        allowed_hosts: &c.allowed_hosts,
        allow_loopback: c.allow_loopback,
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
