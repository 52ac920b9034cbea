//! The `ats` part of the admin API's integration form, picked by kind: the input an operator
//! sends ([`AtsInput`]), the view ([`AtsView`]) and the storage form ([`StoredAts`]). Each ATS
//! writes its own fields in `ats/<name>/form.rs`; this module only dispatches on the kind.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use super::config::AtsConfig;

/// One kind's input: its field names (to name another kind's fields in an error) and how its
/// fields are read.
struct Kind {
    name: &'static str,
    fields: &'static [&'static str],
    read: fn(&AtsInput, &str) -> Result<(), String>,
}

/// Whether `input`'s fields read as kind `kind`'s input `T`.
fn reads<T: DeserializeOwned>(input: &AtsInput, kind: &str) -> Result<(), String> {
    input.parse::<T>(kind).map(drop)
}

/// The ATS part of an integration's create or update body: `kind` is `lever` (the default) or
/// `gem`; each kind takes only its own fields (see `ats/<name>/form.rs`). The kind of an existing
/// integration cannot change.
///
/// Read as a body, a field of no ATS or a value of the wrong type is refused at once (a bad
/// request), before the kind is known; another kind's field is refused once it is.
#[derive(Debug, Default, Clone)]
pub struct AtsInput {
    pub kind: Option<String>,
    /// The kind's own fields, read once the kind is known.
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl utoipa::ToSchema for AtsInput {}

impl<'de> Deserialize<'de> for AtsInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut fields = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let kind = match fields.remove("kind") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(k)) => Some(k),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "`kind` must be a string, not {other}"
                )))
            }
        };
        for name in fields.keys() {
            if !KINDS.iter().any(|k| k.fields.contains(&name.as_str())) {
                return Err(D::Error::custom(format!("unknown field `{name}` in `ats`")));
            }
        }
        let input = AtsInput { kind, fields };
        // Each kind's fields read as that kind reads them, so a wrong type is refused here.
        for kind in KINDS {
            let subset = AtsInput {
                kind: None,
                fields: (input.fields.iter())
                    .filter(|(k, _)| kind.fields.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            (kind.read)(&subset, kind.name).map_err(D::Error::custom)?;
        }
        Ok(input)
    }
}

impl AtsInput {
    /// The kind's input, or why the fields do not fit it.
    fn parse<T: DeserializeOwned>(&self, kind: &str) -> Result<T, String> {
        let own = KINDS.iter().find(|k| k.name == kind).map(|k| k.fields);
        let foreign: Vec<&str> = (self.fields.keys())
            .filter(|f| own.is_some_and(|own| !own.contains(&f.as_str())))
            .filter(|f| KINDS.iter().any(|k| k.fields.contains(&f.as_str())))
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
}

/// Writes, from [`super::each_ats`], the kinds an input can be, [`AtsInput::create`] and
/// [`AtsInput::apply`], [`AtsView`] and [`StoredAts`].
macro_rules! ats_forms {
    ($($(#[$doc:meta])* $variant:ident($kind:literal, $folder:ident: $config:ident, $input:ident, $view:ident, $stored:ident),)*) => {
        /// Every kind.
        const KINDS: &[Kind] = &[
            $(Kind {
                name: $kind,
                fields: super::$folder::form::$input::FIELDS,
                read: reads::<super::$folder::form::$input>,
            },)*
        ];

        /// Hand-written because the body is read by its own parser: one of the kinds' inputs,
        /// with `kind` beside their fields.
        impl utoipa::PartialSchema for AtsInput {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
                let kind = |name: &str| {
                    ObjectBuilder::new().property(
                        "kind",
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some([name.to_string()])),
                    )
                };
                OneOfBuilder::new()
                    $(.item(
                        AllOfBuilder::new()
                            .item(kind($kind))
                            .item(<super::$folder::form::$input as utoipa::PartialSchema>::schema()),
                    ))*
                    .into()
            }
        }

        impl AtsInput {
            /// The section a create starts from: the kind's required fields (Lever when no
            /// `kind` is given).
            pub fn create(&self) -> Result<AtsConfig, String> {
                match self.kind.as_deref().unwrap_or("lever") {
                    $($kind => Ok(AtsConfig::$variant(
                        self.parse::<super::$folder::form::$input>($kind)?.create()?,
                    )),)*
                    other => Err(format!(
                        "`ats.kind` must be `{}`, not `{other}`",
                        [$($kind),*].join("` or `")
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
                    $(AtsConfig::$variant(c) => self.parse::<super::$folder::form::$input>(kind)?.apply(c),)*
                }
                Ok(())
            }
        }

        /// The ATS part of the admin API's integration view: secrets only as "is set" flags.
        #[derive(Debug, Serialize, utoipa::ToSchema)]
        #[serde(tag = "kind")]
        pub enum AtsView {
            $(#[serde(rename = $kind)] $variant(super::$folder::form::$view),)*
        }

        impl AtsView {
            /// The view of `ats`.
            pub fn of(ats: &AtsConfig) -> AtsView {
                match ats {
                    $(AtsConfig::$variant(c) => AtsView::$variant(super::$folder::form::$view::of(c)),)*
                }
            }
        }

        /// The ATS part of the storage form: secrets in clear, read back by [`AtsConfig`]'s
        /// `Deserialize`.
        #[derive(Serialize)]
        #[serde(tag = "kind")]
        pub enum StoredAts<'a> {
            $(#[serde(rename = $kind)] $variant(super::$folder::form::$stored<'a>),)*
        }

        impl<'a> StoredAts<'a> {
            /// The storage form of `ats`.
            pub fn of(ats: &'a AtsConfig) -> StoredAts<'a> {
                match ats {
                    $(AtsConfig::$variant(c) => StoredAts::$variant(super::$folder::form::$stored::of(c)),)*
                }
            }
        }
    };
}
super::each_ats!(ats_forms);

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> AtsInput {
        serde_json::from_value(json).expect("an object")
    }

    #[test]
    fn each_kind_takes_only_its_own_fields() {
        let lever = input(serde_json::json!({"api_key": "k", "signature_token": "t"}))
            .create()
            .expect("lever is the default kind");
        assert_eq!(lever.kind(), "lever");
        let error = input(serde_json::json!({
            "kind": "gem", "webhook_url": "https://g.example/h", "webhook_secret": "s",
            "signature_token": "t", "api_key": "k"
        }))
        .create()
        .expect_err("Lever fields on a Gem integration");
        assert!(
            error.contains("a gem integration has no `ats.")
                && error.contains("signature_token")
                && error.contains("api_key"),
            "{error}"
        );
        let error = serde_json::from_value::<AtsInput>(
            serde_json::json!({"signature_token": "t", "sigature_token": "t"}),
        )
        .expect_err("a field of no ATS is a bad body")
        .to_string();
        assert!(error.contains("unknown field `sigature_token`"), "{error}");
        serde_json::from_value::<AtsInput>(serde_json::json!({"oauth": "yes"}))
            .expect_err("a value of the wrong type is a bad body");
        let error = input(serde_json::json!({"kind": "workday"}))
            .create()
            .expect_err("no such ATS");
        assert!(error.contains("not `workday`"), "{error}");
    }

    #[test]
    fn the_view_and_the_stored_form_keep_their_shape() {
        let mut gem = input(serde_json::json!({
            "kind": "gem", "webhook_url": "https://g.example/h", "webhook_secret": "whsec"
        }))
        .create()
        .expect("a gem section");
        input(
            serde_json::json!({"previous_webhook_secret": "old", "previous_secret_expires_at": 7}),
        )
        .apply(&mut gem)
        .expect("a rotation");
        let view = serde_json::to_value(AtsView::of(&gem)).expect("serializes");
        assert_eq!(
            view,
            serde_json::json!({"kind": "gem", "webhook_url": "https://g.example/h",
                "webhook_secret_set": true, "previous_webhook_secret_set": true,
                "previous_secret_expires_at": 7})
        );
        let stored = serde_json::to_string(&StoredAts::of(&gem)).expect("serializes");
        let back: AtsConfig = serde_json::from_str(&stored).expect("reads back");
        let AtsConfig::Gem(back) = back else {
            panic!("a Gem section")
        };
        assert_eq!(back.webhook_secret.expose(), "whsec");
        assert_eq!(back.previous_secret_expires_at, Some(7));
    }
}
