//! [`Secret`]: a credential held so that it is never printed. Its own module, apart from
//! `config`, so that every part that holds one (each ATS's config section, the store) can use it
//! without depending on the whole configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A secret value (API key, signing token). Never printed by `Debug`, never serialized in clear.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

/// An `env:NAME` secret whose variable is not set.
#[derive(Debug, thiserror::Error)]
#[error("environment variable `{0}` named by a secret is not set")]
pub struct MissingEnv(pub String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the one place that needs it (signing, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Resolves `env:NAME` indirection.
    pub(crate) fn resolve(&mut self) -> Result<(), MissingEnv> {
        if let Some(name) = self.0.strip_prefix("env:") {
            let name = name.to_string();
            self.0 = std::env::var(&name).map_err(|_| MissingEnv(name))?;
        }
        Ok(())
    }
    /// Whether the value is empty or blank: an HMAC keyed with it is no authentication at all.
    pub fn is_blank(&self) -> bool {
        self.0.trim().is_empty()
    }
    /// Whether `given` is this secret, in constant time whatever the lengths (digests compared):
    /// a bearer or sign-in token.
    pub fn matches(&self, given: &str) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        Sha256::digest(given.as_bytes())
            .ct_eq(&Sha256::digest(self.0.as_bytes()))
            .into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug_output() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"***\"");
    }
}
