//! The events filter as the console's forms carry it ([`FilterForm`]: every field a text box,
//! empty meaning "any"), turned into the admin API's [`Criteria`] so the list, its count and a
//! bulk replay match exactly what `GET /admin/events` and `POST /admin/replays` would. Also
//! renders the filter back: as a query string (page links) and as hidden fields (the bulk
//! replay form).

use maud::{html, Markup};
use serde::Deserialize;

use crate::http::admin::criteria::Criteria;
use crate::store::EventState;

/// Every state, in the order the form offers them.
pub const STATES: [EventState; 6] = [
    EventState::Queued,
    EventState::Running,
    EventState::Waiting,
    EventState::Done,
    EventState::Skipped,
    EventState::Dead,
];

/// The filter fields of the events list's GET form (and of the bulk replay's POST form).
#[derive(Deserialize, Default, Clone)]
pub struct FilterForm {
    pub integration: Option<String>,
    pub connector: Option<String>,
    pub ats: Option<String>,
    pub candidate: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A browser's `datetime-local` value (`2026-12-06T10:42`, no zone) read as UTC; anything else
/// is left for the criteria to accept or refuse.
fn instant(v: &Option<String>) -> Option<String> {
    nonempty(v).map(|t| {
        let local = t.len() == 16 && t.as_bytes().get(10) == Some(&b'T');
        if local {
            format!("{t}:00Z")
        } else {
            t
        }
    })
}

/// `state` as an [`EventState`], if it names one.
pub fn parse_state(s: &str) -> Option<EventState> {
    STATES.into_iter().find(|st| st.as_str() == s)
}

impl FilterForm {
    /// The admin API's criteria; an unknown state is refused here, bad times by
    /// [`Criteria::filter`].
    pub fn criteria(&self) -> Result<Criteria, String> {
        let state = match nonempty(&self.state) {
            None => None,
            Some(s) => Some(parse_state(&s).ok_or_else(|| format!("state: unknown state `{s}`"))?),
        };
        Ok(Criteria {
            state,
            integration: nonempty(&self.integration),
            connector: nonempty(&self.connector),
            ats: nonempty(&self.ats),
            candidate: nonempty(&self.candidate),
            error: nonempty(&self.error),
            since: instant(&self.since),
            until: instant(&self.until),
        })
    }

    /// The non-empty fields as `(name, value)`.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("integration", nonempty(&self.integration)),
            ("connector", nonempty(&self.connector)),
            ("ats", nonempty(&self.ats)),
            ("candidate", nonempty(&self.candidate)),
            ("state", nonempty(&self.state)),
            ("error", nonempty(&self.error)),
            ("since", nonempty(&self.since)),
            ("until", nonempty(&self.until)),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }

    /// `/console/events?…` with this filter and the cursor `before`.
    pub fn link(&self, before: Option<i64>) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            s.append_pair(k, &v);
        }
        if let Some(b) = before {
            s.append_pair("before", &b.to_string());
        }
        format!("/console/events?{}", s.finish())
    }

    /// The filter as hidden fields of a form.
    pub fn hidden(&self) -> Markup {
        html! {
            @for (k, v) in self.pairs() { input type="hidden" name=(k) value=(v); }
        }
    }

    /// The filter's text boxes and selects, filled in.
    pub fn fields(&self, integrations: &[String]) -> Markup {
        let val = |v: &Option<String>| v.clone().unwrap_or_default();
        let integration = nonempty(&self.integration);
        let state = nonempty(&self.state);
        let ats = nonempty(&self.ats);
        html! {
            label { "Integration"
                select name="integration" {
                    option value="" { "all" }
                    @for id in integrations {
                        option value=(id) selected[integration.as_deref() == Some(id.as_str())] { (id) }
                    }
                }
            }
            label { "Connector" input type="text" name="connector" size="10" value=(val(&self.connector)); }
            label { "ATS"
                select name="ats" {
                    option value="" { "all" }
                    @for a in ["lever", "gem"] { option value=(a) selected[ats.as_deref() == Some(a)] { (a) } }
                }
            }
            label { "State"
                select name="state" {
                    option value="" { "all" }
                    @for st in STATES {
                        option value=(st.as_str()) selected[state.as_deref() == Some(st.as_str())] { (st.as_str()) }
                    }
                }
            }
            label { "Candidate / opportunity (text in the payload)"
                input type="search" name="candidate" value=(val(&self.candidate));
            }
            label { "Error text" input type="search" name="error" value=(val(&self.error)); }
            label { "Since (UTC)" input type="text" name="since" size="20" placeholder="2026-12-06T10:00:00Z" value=(val(&self.since)); }
            label { "Until (UTC)" input type="text" name="until" size="20" placeholder="RFC 3339 or unix ms" value=(val(&self.until)); }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FilterForm;

    #[test]
    fn empty_fields_mean_any_and_a_browser_local_time_is_utc() {
        let form = FilterForm {
            candidate: Some("  ".into()),
            since: Some("2026-12-06T10:42".into()),
            state: Some("dead".into()),
            ..FilterForm::default()
        };
        let c = form.criteria().expect("valid");
        assert_eq!(c.candidate, None);
        assert_eq!(c.since.as_deref(), Some("2026-12-06T10:42:00Z"));
        assert_eq!(
            form.link(Some(7)),
            "/console/events?state=dead&since=2026-12-06T10%3A42&before=7"
        );
        let bad = FilterForm {
            state: Some("lost".into()),
            ..FilterForm::default()
        };
        assert!(bad.criteria().is_err());
    }
}
