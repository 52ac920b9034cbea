//! [`AtsConfig`]: the ATS an integration serves, as written in its `[integrations.ats]` section
//! (`kind = "lever"` / `"gem"`). Each variant's type lives in its ATS's folder
//! (`ats/<name>/config.rs`) and answers for itself through [`AtsSection`]; this enum only picks
//! the variant. Apart from `ats/mod.rs` so that `config` can name it without depending on the
//! adapters (and through them on the store).

use serde::Deserialize;

pub use super::section::AtsSection;

/// Writes [`AtsConfig`] and its dispatch from [`super::each_ats`].
macro_rules! ats_config {
    ($($(#[$doc:meta])* $variant:ident($kind:literal, $folder:ident: $config:ident, $input:ident, $view:ident, $stored:ident),)*) => {
        /// The ATS an integration serves.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "kind", deny_unknown_fields)]
        pub enum AtsConfig {
            $($(#[$doc])* #[serde(rename = $kind)] $variant(super::$folder::config::$config),)*
        }

        impl AtsConfig {
            /// The section of the ATS, for what every ATS answers.
            pub fn section(&self) -> &dyn AtsSection {
                match self {
                    $(AtsConfig::$variant(c) => c,)*
                }
            }

            /// [`AtsConfig::section`], to resolve its secrets.
            pub fn section_mut(&mut self) -> &mut dyn AtsSection {
                match self {
                    $(AtsConfig::$variant(c) => c,)*
                }
            }
        }
    };
}
super::each_ats!(ats_config);

impl AtsConfig {
    /// `lever` or `gem`, as written in the config.
    pub fn kind(&self) -> &'static str {
        self.section().kind()
    }
}
