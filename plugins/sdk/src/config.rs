//! Reading the integration's configuration with the errors the host expects: a missing required
//! setting is a [`ConnectorError::Config`] (the operator must fix it; the host does not retry).
//! Error texts name the key, never a secret's value.

use crate::{ConnectorError, Host};

/// A setting, trimmed; blank counts as unset.
pub fn setting(host: &impl Host, key: &str) -> Option<String> {
    host.setting(key)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// A setting, trimmed, or `default` when unset or blank (e.g. a vendor's production API base).
pub fn setting_or(host: &impl Host, key: &str, default: &str) -> String {
    setting(host, key).unwrap_or_else(|| default.to_string())
}

/// A setting the connector cannot work without, trimmed: unset or blank is a config error
/// ``missing setting `key` ``.
pub fn required_setting(host: &impl Host, key: &str) -> Result<String, ConnectorError> {
    setting(host, key).ok_or_else(|| ConnectorError::Config(format!("missing setting `{key}`")))
}

/// A secret the connector cannot work without, exactly as configured (not trimmed: whether
/// surrounding spaces matter is the vendor's business): unset or blank is a config error
/// ``missing secret `key` ``.
pub fn required_secret(host: &impl Host, key: &str) -> Result<String, ConnectorError> {
    host.secret(key)
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| ConnectorError::Config(format!("missing secret `{key}`")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;

    #[test]
    fn blank_is_unset_and_required_is_a_config_error() {
        let host = FakeHost::new()
            .with_config("api-base", "  https://x/  ")
            .with_config("blank", " ")
            .with_secret("api-key", " k ")
            .with_secret("empty", "");
        assert_eq!(setting(&host, "api-base").as_deref(), Some("https://x/"));
        assert_eq!(setting(&host, "blank"), None);
        assert_eq!(setting_or(&host, "blank", "d"), "d");
        assert_eq!(required_secret(&host, "api-key").as_deref(), Ok(" k "));
        assert_eq!(
            required_secret(&host, "empty"),
            Err(ConnectorError::Config("missing secret `empty`".into()))
        );
        assert_eq!(
            required_setting(&host, "nope"),
            Err(ConnectorError::Config("missing setting `nope`".into()))
        );
    }
}
