//! What every ATS's config section (`[integrations.ats]`, one type per ATS in
//! `ats/<name>/config.rs`) answers: its kind, its checks, its secrets, and the URLs the operator
//! gives the ATS. A leaf module: the sections and [`AtsConfig`](super::config::AtsConfig) depend on
//! it, it depends on nothing of the host but [`Secret`].

use crate::secret::Secret;

/// `<public_url>/hooks/<integration>/<source>`: where an ATS (`source` = its kind) or the vendor
/// (`source` = `vendor`) sends this integration's webhooks. The one place that spells the path.
pub fn hook_url(public_url: &str, integration: &str, source: &str) -> String {
    format!("{public_url}/hooks/{integration}/{source}")
}

/// One ATS's config section.
pub trait AtsSection {
    /// `lever`, `gem`: the config's `ats.kind`.
    fn kind(&self) -> &'static str;

    /// Checks what serde cannot (a credential given, signing secrets not empty). Runs after the
    /// secrets were resolved.
    fn check(&self) -> Result<(), String>;

    /// Every secret of the section, to resolve `env:` indirection at start-up.
    fn secrets_mut(&mut self) -> Vec<&mut Secret>;

    /// What the operator gives the ATS, as `(name, url)` pairs below `public_url`: the admin
    /// API's `webhook_urls` entries and the start-up log's endpoints.
    fn webhook_urls(&self, public_url: &str, integration: &str) -> Vec<(&'static str, String)>;
}
