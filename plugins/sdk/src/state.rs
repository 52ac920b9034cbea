//! Typed values in the connector's durable `state` (a string key-value store private to the
//! connector within one integration), stored as JSON.
//!
//! `set` is durable when it returns, which is what makes "record the intent before the vendor
//! call" work (see [`crate::idempotency`]). The host caps value sizes and the total per
//! integration; a `set` over the cap traps the call, so keep values small.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{ConnectorError, Host};

/// The value under `key` decoded from JSON; `Ok(None)` when there is none. A value that is not
/// valid JSON for `T` is an error (a bug or a changed format; retrying will not help), never a
/// silent `None`.
pub fn get_json<T: DeserializeOwned>(
    host: &impl Host,
    key: &str,
) -> Result<Option<T>, ConnectorError> {
    match host.state_get(key) {
        None => Ok(None),
        Some(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            ConnectorError::Rejected(format!("state under `{key}` is not what we stored: {e}"))
        }),
    }
}

/// Stores `value` under `key` as JSON, durably, replacing any previous value.
pub fn set_json<T: Serialize + ?Sized>(
    host: &impl Host,
    key: &str,
    value: &T,
) -> Result<(), ConnectorError> {
    let text = serde_json::to_string(value)
        .map_err(|e| ConnectorError::Rejected(format!("cannot encode state `{key}`: {e}")))?;
    host.state_set(key, &text);
    Ok(())
}

/// Removes `key`.
pub fn delete(host: &impl Host, key: &str) {
    host.state_delete(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cursor {
        page: u32,
        seen: Vec<String>,
    }

    #[test]
    fn round_trip_missing_and_corrupt() {
        let host = FakeHost::new();
        assert_eq!(get_json::<Cursor>(&host, "c"), Ok(None));
        let c = Cursor {
            page: 2,
            seen: vec!["a".into()],
        };
        set_json(&host, "c", &c).unwrap();
        assert_eq!(
            host.state("c").as_deref(),
            Some(r#"{"page":2,"seen":["a"]}"#)
        );
        assert_eq!(get_json::<Cursor>(&host, "c"), Ok(Some(c)));
        host.set_state("c", "not json");
        assert!(matches!(
            get_json::<Cursor>(&host, "c"),
            Err(ConnectorError::Rejected(_))
        ));
        delete(&host, "c");
        assert_eq!(host.state("c"), None);
    }
}
