//! Canditech webhook events (`docs/canditech.md`, "Webhooks") and what each means for the ATS:
//! the normalized state, the status label, the score and results link, the verdict and a note.
//! Plain Rust, tested natively; `lib.rs` converts to the contract's types.

use serde::Deserialize;

/// Status label: the invitation was created or sent.
pub const LABEL_INVITED: &str = "Canditech - Invited";
/// Status label: the candidate opened the test.
pub const LABEL_STARTED: &str = "Canditech - Started";
/// Status label: the candidate submitted.
pub const LABEL_COMPLETED: &str = "Canditech - Completed";
/// Status label: the candidate has no email; nothing was sent.
pub const LABEL_NO_EMAIL: &str = "Canditech - ERROR (No Email)";
/// Status label: no assessment was chosen, or Canditech does not offer it; nothing was sent.
pub const LABEL_NO_ASSESSMENT: &str = "Canditech - ERROR (No Assessment)";

/// Every status label, for the manifest.
pub const STATUS_LABELS: [&str; 5] = [
    LABEL_INVITED,
    LABEL_STARTED,
    LABEL_COMPLETED,
    LABEL_NO_EMAIL,
    LABEL_NO_ASSESSMENT,
];

/// Verdict label of a thumbs up.
pub const VERDICT_UP: &str = "Canditech - Thumbs Up";
/// Verdict label of a thumbs down.
pub const VERDICT_DOWN: &str = "Canditech - Thumbs Down";
/// Every verdict label, for the manifest.
pub const VERDICT_LABELS: [&str; 2] = [VERDICT_UP, VERDICT_DOWN];

/// Normalized state (the contract's `screening-state`, the values this connector uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Pending,
    Analyzing,
    Complete,
    Error,
}

/// A reviewer's decision.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Verdict {
    /// `thumbs_up` or `thumbs_down`.
    pub decision: String,
    #[serde(default)]
    pub reviewer: Option<String>,
    #[serde(default)]
    pub given_at: Option<String>,
    #[serde(default)]
    pub revision: u32,
}

/// The invitation object as a webhook carries it (unknown fields ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Invitation {
    pub id: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub max_score: Option<f64>,
    #[serde(default)]
    pub results_url: Option<String>,
    #[serde(default)]
    pub verdict: Option<Verdict>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
struct Data {
    invitation: Invitation,
    #[serde(default)]
    previous_verdict: Option<Verdict>,
}

/// One webhook event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// `evt_…`, the same on every delivery of this event.
    pub id: String,
    /// E.g. `test.completed`.
    pub kind: String,
    pub invitation: Invitation,
    /// On `verdict.changed`: the verdict it replaces.
    pub previous_verdict: Option<Verdict>,
}

/// Parses a webhook body. An error names what is wrong (for our log, not the vendor).
pub fn parse(body: &[u8]) -> Result<Event, String> {
    #[derive(Deserialize)]
    struct Raw {
        id: String,
        #[serde(rename = "type")]
        kind: String,
        data: Data,
    }
    let raw: Raw =
        serde_json::from_slice(body).map_err(|e| format!("not a Canditech event: {e}"))?;
    if raw.id.is_empty() || raw.data.invitation.id.is_empty() {
        return Err("the event or its invitation has no id".into());
    }
    Ok(Event {
        id: raw.id,
        kind: raw.kind,
        invitation: raw.data.invitation,
        previous_verdict: raw.data.previous_verdict,
    })
}

/// What an event means for the ATS.
#[derive(Debug, Clone, PartialEq)]
pub struct Mapped {
    pub state: State,
    pub label: &'static str,
    pub report_url: Option<String>,
    pub score: Option<f64>,
    /// One of [`VERDICT_LABELS`].
    pub verdict: Option<&'static str>,
    pub note: Option<String>,
}

impl Mapped {
    /// A status with just a state and a label.
    pub fn plain(state: State, label: &'static str) -> Mapped {
        Mapped {
            state,
            label,
            report_url: None,
            score: None,
            verdict: None,
            note: None,
        }
    }
}

/// `87` for 87.0, `42.5` for 42.5.
fn number(x: f64) -> String {
    format!("{x}")
}

fn decision_word(decision: &str) -> Option<&'static str> {
    match decision {
        "thumbs_up" => Some("Thumbs up"),
        "thumbs_down" => Some("Thumbs down"),
        _ => None,
    }
}

fn verdict_label(decision: &str) -> Option<&'static str> {
    match decision {
        "thumbs_up" => Some(VERDICT_UP),
        "thumbs_down" => Some(VERDICT_DOWN),
        _ => None,
    }
}

/// `(by Riley Reviewer, 2025-05-02T09:00:00Z)`, or less when the API did not say.
fn by_whom(v: &Verdict, extra: Option<String>) -> String {
    let parts: Vec<String> = [
        v.reviewer
            .clone()
            .filter(|r| !r.trim().is_empty())
            .map(|r| format!("by {}", r.trim())),
        v.given_at.clone().filter(|t| !t.trim().is_empty()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut inner = parts.join(", ");
    if let Some(extra) = extra {
        if inner.is_empty() {
            inner = extra;
        } else {
            inner = format!("{inner}; {extra}");
        }
    }
    if inner.is_empty() {
        String::new()
    } else {
        format!(" ({inner})")
    }
}

/// The completion note: `Canditech assessment completed: score 87/100. Results: <url>`.
pub fn completion_note(inv: &Invitation) -> Option<String> {
    let url = inv.results_url.as_deref().filter(|u| !u.is_empty())?;
    let score = match (inv.score, inv.max_score) {
        (Some(s), Some(m)) => format!("score {}/{}", number(s), number(m)),
        (Some(s), None) => format!("score {}", number(s)),
        (None, _) => "no score".to_string(),
    };
    Some(format!(
        "Canditech assessment completed: {score}. Results: {url}"
    ))
}

/// Maps an event. `None`: an event type (or verdict decision) this connector does not know;
/// acknowledge it and change nothing.
pub fn map(event: &Event) -> Option<Mapped> {
    let inv = &event.invitation;
    let completed = || Mapped {
        report_url: inv.results_url.clone().filter(|u| !u.is_empty()),
        score: inv.score,
        ..Mapped::plain(State::Complete, LABEL_COMPLETED)
    };
    match event.kind.as_str() {
        "invitation.sent" => Some(Mapped::plain(State::Pending, LABEL_INVITED)),
        "test.started" => Some(Mapped::plain(State::Analyzing, LABEL_STARTED)),
        "test.completed" => Some(Mapped {
            note: completion_note(inv),
            ..completed()
        }),
        "verdict.given" | "verdict.changed" => {
            let v = inv.verdict.as_ref()?;
            let word = decision_word(&v.decision)?;
            let note = match (&event.kind[..], &event.previous_verdict) {
                ("verdict.changed", Some(prev)) => {
                    let was = decision_word(&prev.decision)
                        .map(|w| format!("was {w}"))
                        .unwrap_or_else(|| format!("was {}", prev.decision));
                    format!(
                        "Canditech verdict changed to {word}{}",
                        by_whom(v, Some(was))
                    )
                }
                ("verdict.changed", None) => {
                    format!("Canditech verdict changed to {word}{}", by_whom(v, None))
                }
                _ => format!("Canditech verdict: {word}{}", by_whom(v, None)),
            };
            Some(Mapped {
                verdict: verdict_label(&v.decision),
                note: Some(note),
                ..completed()
            })
        }
        _ => None,
    }
}

/// The verdict's revision, for verdict events (ordering: a lower one than already seen is stale).
pub fn verdict_revision(event: &Event) -> Option<u32> {
    match event.kind.as_str() {
        "verdict.given" | "verdict.changed" => {
            event.invitation.verdict.as_ref().map(|v| v.revision)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        kind: &str,
        invitation: serde_json::Value,
        previous: Option<serde_json::Value>,
    ) -> Event {
        let mut data = json!({ "invitation": invitation });
        if let Some(p) = previous {
            data["previous_verdict"] = p;
        }
        let body = json!({"id": "evt_1", "type": kind, "created_at": "2025-05-02T10:00:00Z", "data": data});
        parse(body.to_string().as_bytes()).unwrap()
    }

    fn completed_invitation(verdict: Option<serde_json::Value>) -> serde_json::Value {
        json!({"id": "inv_1", "status": "completed", "score": 87, "max_score": 100,
               "results_url": "https://app.canditech.io/results/inv_1", "verdict": verdict,
               "unknown_field": true})
    }

    #[test]
    fn progress_events_map_to_states_and_labels() {
        let sent = event(
            "invitation.sent",
            json!({"id": "inv_1", "status": "invited"}),
            None,
        );
        assert_eq!(
            map(&sent),
            Some(Mapped::plain(State::Pending, LABEL_INVITED))
        );
        let started = event(
            "test.started",
            json!({"id": "inv_1", "status": "started"}),
            None,
        );
        assert_eq!(
            map(&started),
            Some(Mapped::plain(State::Analyzing, LABEL_STARTED))
        );
        assert_eq!(
            map(&event("test.paused", json!({"id": "inv_1"}), None)),
            None
        );
    }

    #[test]
    fn completion_carries_score_link_and_a_note_with_both() {
        let m = map(&event("test.completed", completed_invitation(None), None)).unwrap();
        assert_eq!((m.state, m.label), (State::Complete, LABEL_COMPLETED));
        assert_eq!(m.score, Some(87.0));
        assert_eq!(
            m.report_url.as_deref(),
            Some("https://app.canditech.io/results/inv_1")
        );
        assert_eq!(
            m.note.as_deref(),
            Some("Canditech assessment completed: score 87/100. Results: https://app.canditech.io/results/inv_1")
        );
        assert_eq!(m.verdict, None);
        let half = json!({"id": "inv_1", "score": 42.5, "max_score": 50, "results_url": "u"});
        assert_eq!(
            completion_note(&serde_json::from_value(half).unwrap()).unwrap(),
            "Canditech assessment completed: score 42.5/50. Results: u"
        );
    }

    #[test]
    fn verdicts_given_and_changed_say_who_and_when() {
        let up = json!({"decision": "thumbs_up", "reviewer": "Riley Reviewer",
                        "given_at": "2025-05-02T09:00:00Z", "revision": 1});
        let given = event(
            "verdict.given",
            completed_invitation(Some(up.clone())),
            None,
        );
        let m = map(&given).unwrap();
        assert_eq!(m.verdict, Some(VERDICT_UP));
        assert_eq!((m.state, m.label), (State::Complete, LABEL_COMPLETED));
        assert_eq!(
            m.note.as_deref(),
            Some("Canditech verdict: Thumbs up (by Riley Reviewer, 2025-05-02T09:00:00Z)")
        );
        assert_eq!(verdict_revision(&given), Some(1));

        let down = json!({"decision": "thumbs_down", "reviewer": "Sam Second",
                          "given_at": "2025-05-03T09:00:00Z", "revision": 2});
        let changed = event(
            "verdict.changed",
            completed_invitation(Some(down)),
            Some(up),
        );
        let m = map(&changed).unwrap();
        assert_eq!(m.verdict, Some(VERDICT_DOWN));
        assert_eq!(
            m.note.as_deref(),
            Some("Canditech verdict changed to Thumbs down (by Sam Second, 2025-05-03T09:00:00Z; was Thumbs up)")
        );
        assert_eq!(verdict_revision(&changed), Some(2));

        let bare = event(
            "verdict.given",
            completed_invitation(Some(json!({"decision": "thumbs_down"}))),
            None,
        );
        assert_eq!(
            map(&bare).unwrap().note.as_deref(),
            Some("Canditech verdict: Thumbs down")
        );
        let odd = event(
            "verdict.given",
            completed_invitation(Some(json!({"decision": "maybe"}))),
            None,
        );
        assert_eq!(map(&odd), None, "an unknown decision is not guessed at");
    }

    #[test]
    fn bodies_that_are_not_events_are_refused() {
        for body in [
            &b"{oops"[..],
            br#"{"id":"e","type":"test.started"}"#,
            br#"{"id":"","type":"x","data":{"invitation":{"id":"i"}}}"#,
        ] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
