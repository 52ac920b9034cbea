//! Gem's config: the integration's `[integrations.ats]` section with `kind = "gem"`.

use serde::Deserialize;

use crate::ats::section::AtsSection;
use crate::secret::Secret;

/// The base of integration `integration`'s Gem API (`/packages`, `/screenings`), the URL to give
/// Gem. The one place that spells the path.
pub fn api_url(public_url: &str, integration: &str) -> String {
    format!("{public_url}/gem/{integration}")
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

impl AtsSection for GemConfig {
    fn kind(&self) -> &'static str {
        "gem"
    }

    fn check(&self) -> Result<(), String> {
        if !self.webhook_url.starts_with("http://") && !self.webhook_url.starts_with("https://") {
            return Err("ats.webhook_url must be an http(s) URL".into());
        }
        if self.webhook_secret.is_blank()
            || (self.previous_webhook_secret.as_ref()).is_some_and(Secret::is_blank)
        {
            return Err(
                "ats.webhook_secret and ats.previous_webhook_secret must not be empty".into(),
            );
        }
        if self.previous_webhook_secret.is_some() && self.previous_secret_expires_at.is_none() {
            return Err(
                "ats.previous_webhook_secret needs previous_secret_expires_at (end of the overlap)"
                    .into(),
            );
        }
        Ok(())
    }

    fn secrets_mut(&mut self) -> Vec<&mut Secret> {
        [&mut self.previous_webhook_secret]
            .into_iter()
            .flatten()
            .chain([&mut self.webhook_secret])
            .collect()
    }

    fn webhook_urls(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)> {
        vec![("gem_api", api_url(public_url, integration))]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
