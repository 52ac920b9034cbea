//! The operators' event filter as the admin API takes it ([`Criteria`]: the events list's query,
//! a replay job's body), turned into the store's [`EventFilter`]. `connector` and `ats` name
//! integrations (those served by that connector, those on that ATS), so the store filters on
//! integration ids only. Bad values are a 400 naming the field.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::App;
use crate::http::error::ApiError;
use crate::store::search::EventFilter;
use crate::store::EventState;

/// Which events (every field optional; each one narrows the match).
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Criteria {
    pub state: Option<EventState>,
    pub integration: Option<String>,
    /// Integrations served by this connector.
    pub connector: Option<String>,
    /// Integrations on this ATS (`lever`, `gem`).
    pub ats: Option<String>,
    /// Text in the payload: a candidate's or opportunity's id, an email, an order reference.
    pub candidate: Option<String>,
    /// Text in the last error.
    pub error: Option<String>,
    /// Received at or after (RFC 3339, or unix ms).
    pub since: Option<String>,
    /// Received before (RFC 3339, or unix ms).
    pub until: Option<String>,
}

/// `text` as unix ms: a number of milliseconds, or an RFC 3339 date-time.
fn instant(field: &str, text: &str) -> Result<i64, ApiError> {
    let text = text.trim();
    text.parse::<i64>()
        .ok()
        .or_else(|| crate::clock::parse_rfc3339(text).map(|s| s * 1000))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "{field}: `{text}` is neither unix milliseconds nor an RFC 3339 date-time"
            ))
        })
}

impl Criteria {
    /// The store's filter, with `integration`, `connector` and `ats` resolved against the
    /// integrations configured now.
    pub fn filter(&self, app: &App) -> Result<EventFilter, ApiError> {
        let integrations = if self.connector.is_some() || self.ats.is_some() {
            let ids = app
                .integrations()
                .into_iter()
                .filter(|i| {
                    self.connector
                        .as_deref()
                        .is_none_or(|c| i.config.connector == c)
                        && self.ats.as_deref().is_none_or(|a| i.ats.kind() == a)
                        && self
                            .integration
                            .as_deref()
                            .is_none_or(|id| i.config.id == id)
                })
                .map(|i| i.config.id.clone())
                .collect();
            Some(ids)
        } else {
            self.integration.clone().map(|id| vec![id])
        };
        let since_ms = self
            .since
            .as_deref()
            .map(|t| instant("since", t))
            .transpose()?;
        let until_ms = self
            .until
            .as_deref()
            .map(|t| instant("until", t))
            .transpose()?;
        Ok(EventFilter {
            integrations,
            state: self.state,
            text: self.candidate.clone().filter(|t| !t.is_empty()),
            error: self.error.clone().filter(|t| !t.is_empty()),
            since_ms,
            until_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::instant;

    #[test]
    fn instants_are_unix_ms_or_rfc3339_and_anything_else_is_refused() {
        assert_eq!(
            instant("since", "1700000000000").ok(),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            instant("since", "2023-11-14T22:13:20Z").ok(),
            Some(1_700_000_000_000)
        );
        assert!(instant("until", "yesterday").is_err());
    }
}
