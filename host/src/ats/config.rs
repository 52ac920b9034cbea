//! [`AtsConfig`]: the ATS an integration serves, as written in its `[integrations.ats]` section
//! (`kind = "lever"` / `"gem"`). Each variant's type lives in its ATS's folder
//! (`ats/<name>/config.rs`) and answers for itself through [`AtsSection`]; this enum only picks
//! the variant. Apart from `ats/mod.rs` so that `config` can name it without depending on the
//! adapters (and through them on the store).

use serde::Deserialize;

pub use super::section::AtsSection;
use super::{gem::config::GemConfig, lever::config::LeverConfig};

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
    /// The section of the ATS, for what every ATS answers.
    pub fn section(&self) -> &dyn AtsSection {
        match self {
            AtsConfig::Lever(c) => c,
            AtsConfig::Gem(c) => c,
        }
    }

    /// [`AtsConfig::section`], to resolve its secrets.
    pub fn section_mut(&mut self) -> &mut dyn AtsSection {
        match self {
            AtsConfig::Lever(c) => c,
            AtsConfig::Gem(c) => c,
        }
    }

    /// `lever` or `gem`, as written in the config.
    pub fn kind(&self) -> &'static str {
        self.section().kind()
    }
}
