//! Gem's part of the admin API's integration form: the `ats` fields an operator sends
//! ([`GemInput`]), what the API shows back ([`GemView`]: secrets only as "is set"), and the
//! storage form ([`StoredGem`]: secrets in clear, for the host's private store only).

use serde::{Deserialize, Serialize};

use super::config::GemConfig;
use crate::secret::Secret;

/// Gem's `ats` fields of a create or update body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GemInput {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    /// `null` ends a rotation (removes the previous secret).
    #[serde(default, deserialize_with = "double_option")]
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

impl GemInput {
    /// The field names, to tell another ATS's fields from unknown ones.
    pub const FIELDS: &'static [&'static str] = &[
        "webhook_url",
        "webhook_secret",
        "previous_webhook_secret",
        "previous_secret_expires_at",
    ];

    /// The section a create starts from (the required fields; [`GemInput::apply`] adds the rest).
    pub fn create(&self) -> Result<GemConfig, String> {
        Ok(GemConfig {
            webhook_url: (self.webhook_url.clone()).ok_or("`ats.webhook_url` is required")?,
            webhook_secret: Secret::new(
                (self.webhook_secret.clone()).ok_or("`ats.webhook_secret` is required")?,
            ),
            previous_webhook_secret: None,
            previous_secret_expires_at: None,
        })
    }

    /// Applies the given fields to `gem`.
    pub fn apply(self, gem: &mut GemConfig) {
        if let Some(v) = self.webhook_url {
            gem.webhook_url = v;
        }
        if let Some(v) = self.webhook_secret {
            gem.webhook_secret = Secret::new(v);
        }
        if let Some(v) = self.previous_webhook_secret {
            gem.previous_webhook_secret = v.map(Secret::new);
            if gem.previous_webhook_secret.is_none() {
                gem.previous_secret_expires_at = None;
            }
        }
        if let Some(v) = self.previous_secret_expires_at {
            gem.previous_secret_expires_at = Some(v);
        }
    }
}

/// Gem's `ats` in the admin API's view.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct GemView {
    pub webhook_url: String,
    pub webhook_secret_set: bool,
    pub previous_webhook_secret_set: bool,
    pub previous_secret_expires_at: Option<i64>,
}

impl GemView {
    /// The view of `g`.
    pub fn of(g: &GemConfig) -> GemView {
        GemView {
            webhook_url: g.webhook_url.clone(),
            webhook_secret_set: !g.webhook_secret.expose().is_empty(),
            previous_webhook_secret_set: g.previous_webhook_secret.is_some(),
            previous_secret_expires_at: g.previous_secret_expires_at,
        }
    }
}

/// Gem's `ats` in the storage form, read back by [`GemConfig`]'s `Deserialize`.
#[derive(Serialize)]
pub struct StoredGem<'a> {
    webhook_url: &'a str,
    webhook_secret: &'a str,
    previous_webhook_secret: Option<&'a str>,
    previous_secret_expires_at: Option<i64>,
}

impl<'a> StoredGem<'a> {
    /// The storage form of `g`.
    pub fn of(g: &'a GemConfig) -> StoredGem<'a> {
        StoredGem {
            webhook_url: &g.webhook_url,
            webhook_secret: g.webhook_secret.expose(),
            previous_webhook_secret: g.previous_webhook_secret.as_ref().map(Secret::expose),
            previous_secret_expires_at: g.previous_secret_expires_at,
        }
    }
}
