//! The `ats` part of the admin API's integration form, picked by kind: the input an operator
//! sends ([`AtsInput`]), the view ([`AtsView`]) and the storage form ([`StoredAts`]). Each ATS
//! writes its own fields in `ats/<name>/form.rs`; this module only dispatches on the kind.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::config::AtsConfig;
use super::gem::form::{GemInput, GemView, StoredGem};
use super::lever::form::{LeverInput, LeverView, StoredLever};

/// Every kind with the field names of its input, to name another kind's fields in an error.
const KINDS: &[(&str, &[&str])] = &[("lever", LeverInput::FIELDS), ("gem", GemInput::FIELDS)];

/// The ATS part of an integration's create or update body: `kind` is `lever` (the default) or
/// `gem`; each kind takes only its own fields (see `ats/<name>/form.rs`). The kind of an existing
/// integration cannot change.
#[derive(Debug, Default, Deserialize)]
pub struct AtsInput {
    pub kind: Option<String>,
    /// The kind's own fields, read once the kind is known.
    #[serde(flatten)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl AtsInput {
    /// The kind's input, or why the fields do not fit it.
    fn parse<T: DeserializeOwned>(&self, kind: &str) -> Result<T, String> {
        let own = KINDS.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f);
        let foreign: Vec<&str> = (self.fields.keys())
            .filter(|f| own.is_some_and(|own| !own.contains(&f.as_str())))
            .filter(|f| KINDS.iter().any(|(_, fields)| fields.contains(&f.as_str())))
            .map(String::as_str)
            .collect();
        if !foreign.is_empty() {
            return Err(format!(
                "a {kind} integration has no `ats.{}`",
                foreign.join("`, `ats.")
            ));
        }
        serde_json::from_value(serde_json::Value::Object(self.fields.clone()))
            .map_err(|e| format!("ats: {e}"))
    }

    /// The section a create starts from: the kind's required fields.
    pub fn create(&self) -> Result<AtsConfig, String> {
        match self.kind.as_deref().unwrap_or("lever") {
            "lever" => Ok(AtsConfig::Lever(
                self.parse::<LeverInput>("lever")?.create()?,
            )),
            "gem" => Ok(AtsConfig::Gem(self.parse::<GemInput>("gem")?.create()?)),
            other => Err(format!(
                "`ats.kind` must be `lever` or `gem`, not `{other}`"
            )),
        }
    }

    /// Applies the given fields to `ats`, whose kind cannot change.
    pub fn apply(self, ats: &mut AtsConfig) -> Result<(), String> {
        let kind = ats.kind();
        if self.kind.as_deref().is_some_and(|k| k != kind) {
            return Err(format!(
                "`ats.kind` is `{kind}` and cannot change; delete and re-create the integration"
            ));
        }
        match ats {
            AtsConfig::Lever(lever) => self.parse::<LeverInput>(kind)?.apply(lever),
            AtsConfig::Gem(gem) => self.parse::<GemInput>(kind)?.apply(gem),
        }
        Ok(())
    }
}

/// The ATS part of the admin API's integration view: secrets only as "is set" flags.
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AtsView {
    Lever(LeverView),
    Gem(GemView),
}

impl AtsView {
    /// The view of `ats`.
    pub fn of(ats: &AtsConfig) -> AtsView {
        match ats {
            AtsConfig::Lever(l) => AtsView::Lever(LeverView::of(l)),
            AtsConfig::Gem(g) => AtsView::Gem(GemView::of(g)),
        }
    }
}

/// The ATS part of the storage form: secrets in clear, read back by [`AtsConfig`]'s
/// `Deserialize`.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum StoredAts<'a> {
    Lever(StoredLever<'a>),
    Gem(StoredGem<'a>),
}

impl<'a> StoredAts<'a> {
    /// The storage form of `ats`.
    pub fn of(ats: &'a AtsConfig) -> StoredAts<'a> {
        match ats {
            AtsConfig::Lever(l) => StoredAts::Lever(StoredLever::of(l)),
            AtsConfig::Gem(g) => StoredAts::Gem(StoredGem::of(g)),
        }
    }
}
