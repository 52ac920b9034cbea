//! Lever's config: the integration's `[integrations.ats]` section with `kind = "lever"`
//! ([`LeverConfig`]) and the host's one Lever OAuth app (`[lever_oauth]`, [`LeverOAuthConfig`]).

use serde::Deserialize;

use crate::ats::section::{hook_url, AtsSection};
use crate::secret::Secret;

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
    super::permissions::DEFAULT_SCOPES
        .map(String::from)
        .to_vec()
}
fn state_ttl() -> u64 {
    600
}
fn refresh_margin() -> u64 {
    300
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

impl AtsSection for LeverConfig {
    fn kind(&self) -> &'static str {
        "lever"
    }

    fn check(&self) -> Result<(), String> {
        if self.auth().is_none() {
            return Err(
                "ats needs exactly one of api_key, oauth_access_token (non-empty) and oauth = true"
                    .into(),
            );
        }
        if self.signature_token.is_blank() {
            return Err("ats.signature_token must not be empty".into());
        }
        Ok(())
    }

    fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        [&mut self.api_key, &mut self.oauth_access_token]
            .into_iter()
            .flatten()
            .chain([&mut self.signature_token])
            .collect()
    }

    fn webhook_urls(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)> {
        vec![("lever", hook_url(public_url, integration, "lever"))]
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

/// Lever's production API.
pub(crate) fn lever_api_base() -> String {
    "https://api.lever.co/v1".into()
}
