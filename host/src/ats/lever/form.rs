//! Lever's part of the admin API's integration form: the `ats` fields an operator sends
//! ([`LeverInput`]), what the API shows back ([`LeverView`]: secrets only as "is set"), and the
//! storage form ([`StoredLever`]: secrets in clear, for the host's private store only).

use serde::{Deserialize, Serialize};

use super::config::{lever_api_base, LeverConfig};
use crate::secret::Secret;

/// Lever's `ats` fields of a create or update body. `api_key`, `oauth_access_token` and `oauth`
/// are one choice: setting one replaces the others.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeverInput {
    pub api_base: Option<String>,
    pub api_key: Option<String>,
    pub oauth_access_token: Option<String>,
    /// `true`: connect through the host's Lever OAuth app (replaces `api_key` /
    /// `oauth_access_token`; the tokens come from `.../lever/connect`).
    pub oauth: Option<bool>,
    pub signature_token: Option<String>,
    pub trigger_stage: Option<String>,
}

impl LeverInput {
    /// The field names, to tell another ATS's fields from unknown ones.
    pub const FIELDS: &'static [&'static str] = &[
        "api_base",
        "api_key",
        "oauth_access_token",
        "oauth",
        "signature_token",
        "trigger_stage",
    ];

    /// The section a create starts from (the required fields; [`LeverInput::apply`] adds the rest).
    pub fn create(&self) -> Result<LeverConfig, String> {
        Ok(LeverConfig {
            api_base: lever_api_base(),
            api_key: None,
            oauth_access_token: None,
            oauth: false,
            signature_token: Secret::new(
                (self.signature_token.clone()).ok_or("`ats.signature_token` is required")?,
            ),
            trigger_stage: None,
        })
    }

    /// Applies the given fields to `lever`.
    pub fn apply(self, lever: &mut LeverConfig) {
        if let Some(v) = self.api_base {
            lever.api_base = v;
        }
        if self.api_key.is_some() || self.oauth_access_token.is_some() || self.oauth.is_some() {
            lever.api_key = self.api_key.map(Secret::new);
            lever.oauth_access_token = self.oauth_access_token.map(Secret::new);
            lever.oauth = self.oauth.unwrap_or(false);
        }
        if let Some(v) = self.signature_token {
            lever.signature_token = Secret::new(v);
        }
        if let Some(v) = self.trigger_stage {
            lever.trigger_stage = Some(v).filter(|s| !s.trim().is_empty());
        }
    }
}

/// Lever's `ats` in the admin API's view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LeverView {
    pub api_base: String,
    pub api_key_set: bool,
    pub oauth_access_token_set: bool,
    /// Connected through the host's Lever OAuth app.
    pub oauth: bool,
    pub signature_token_set: bool,
    pub trigger_stage: Option<String>,
}

impl LeverView {
    /// The view of `l`.
    pub fn of(l: &LeverConfig) -> LeverView {
        LeverView {
            api_base: l.api_base.clone(),
            api_key_set: l.api_key.is_some(),
            oauth_access_token_set: l.oauth_access_token.is_some(),
            oauth: l.oauth,
            signature_token_set: !l.signature_token.expose().is_empty(),
            trigger_stage: l.trigger_stage.clone(),
        }
    }
}

/// Lever's `ats` in the storage form, read back by [`LeverConfig`]'s `Deserialize`.
#[derive(Serialize)]
pub struct StoredLever<'a> {
    api_base: &'a str,
    api_key: Option<&'a str>,
    oauth_access_token: Option<&'a str>,
    oauth: bool,
    signature_token: &'a str,
    trigger_stage: &'a Option<String>,
}

impl<'a> StoredLever<'a> {
    /// The storage form of `l`.
    pub fn of(l: &'a LeverConfig) -> StoredLever<'a> {
        StoredLever {
            api_base: &l.api_base,
            api_key: l.api_key.as_ref().map(Secret::expose),
            oauth_access_token: l.oauth_access_token.as_ref().map(Secret::expose),
            oauth: l.oauth,
            signature_token: l.signature_token.expose(),
            trigger_stage: &l.trigger_stage,
        }
    }
}
