//! Deciding, before any vendor call, whether a screening request can be ordered at all.
//!
//! Every refusal becomes an error status with a label the recruiter can filter on and a note that
//! says exactly what to fix, because in Lever the only way to retry is to fix the data and move
//! the candidate into the trigger stage again.

use crate::labels;
use crate::package::{self, ConfiguredPackage, Resolution};

/// The parts of a screening request this decision needs (plain types, no bindings).
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Candidate emails, most relevant first.
    pub emails: &'a [String],
    /// Tags on the posting.
    pub posting_tags: &'a [String],
    /// Tags on the opportunity (Lever copies posting tags here too).
    pub opportunity_tags: &'a [String],
    /// An explicitly chosen package, if any.
    pub package: Option<&'a str>,
    /// The stage the candidate reached (the integration's trigger stage), named in the notes.
    pub stage: Option<&'a str>,
}

/// What to do with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Place an order.
    Order {
        /// The numeric package code.
        package_code: String,
        /// The address the invitation goes to.
        email: String,
    },
    /// Do not call Justifacts; show this error instead.
    Refuse {
        /// One of the `(Justifacts)ERROR (...)` labels.
        label: &'static str,
        /// Recruiter-facing explanation (non-secret).
        note: String,
        /// Short machine-ish reason for the log.
        reason: &'static str,
    },
}

/// The first usable email: trimmed, non-empty and at least shaped like an address.
pub fn first_email(emails: &[String]) -> Option<&str> {
    emails
        .iter()
        .map(|e| e.trim())
        .find(|e| !e.is_empty() && e.contains('@'))
}

/// The note for a candidate without an email address.
fn no_email_note(stage: Option<&str>) -> String {
    format!(
        "Justifacts: the candidate has no email address, so the background check invitation \
         could not be sent. Add an email address to the candidate, then {}.",
        package::retry_step(stage)
    )
}

/// Decides what to do with a request.
pub fn plan(req: RequestView<'_>, configured: &[ConfiguredPackage]) -> Plan {
    let resolution = req
        .package
        .and_then(|p| package::resolve_explicit(p, configured))
        .unwrap_or_else(|| {
            package::resolve_tags(
                req.posting_tags
                    .iter()
                    .chain(req.opportunity_tags)
                    .map(String::as_str),
            )
        });
    let package_problem = package::problem_note(&resolution, req.stage);
    let Some(email) = first_email(req.emails) else {
        // One label at a time, but the note mentions the package problem too so the recruiter
        // fixes both in one go.
        let note = match package_problem {
            Some(p) => format!("{} Also: {p}", no_email_note(req.stage)),
            None => no_email_note(req.stage),
        };
        return Plan::Refuse {
            label: labels::ERROR_NO_EMAIL,
            note,
            reason: "no email",
        };
    };
    match resolution {
        Resolution::Code(package_code) => Plan::Order {
            package_code,
            email: email.to_string(),
        },
        other => {
            let (label, reason) = match other {
                Resolution::NoTag => (labels::ERROR_NO_PACKAGE_TAG, "no package tag"),
                Resolution::Conflicting(_) => (
                    labels::ERROR_CONFLICTING_PACKAGE_TAGS,
                    "conflicting package tags",
                ),
                _ => (labels::ERROR_INVALID_PACKAGE_TAG, "invalid package tag"),
            };
            Plan::Refuse {
                label,
                note: package_problem.unwrap_or_default(),
                reason,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const TAG: &str = "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]";

    fn run(emails: &[&str], posting: &[&str], opp: &[&str], package: Option<&str>) -> Plan {
        let (emails, posting, opp) = (strings(emails), strings(posting), strings(opp));
        plan(
            RequestView {
                emails: &emails,
                posting_tags: &posting,
                opportunity_tags: &opp,
                package,
                stage: Some("Background Check"),
            },
            &[],
        )
    }

    fn label(p: &Plan) -> &'static str {
        match p {
            Plan::Refuse { label, .. } => label,
            Plan::Order { .. } => "order",
        }
    }

    #[test]
    fn orders_with_tag_on_posting_and_opportunity() {
        assert_eq!(
            run(&["", "ada@example.com"], &[TAG], &[TAG, "Referral"], None),
            Plan::Order {
                package_code: "13558".into(),
                email: "ada@example.com".into()
            }
        );
        // Tag only on the opportunity.
        assert!(matches!(
            run(&["a@b.c"], &[], &[TAG], None),
            Plan::Order { .. }
        ));
    }

    #[test]
    fn refusals() {
        assert_eq!(label(&run(&[], &[TAG], &[], None)), labels::ERROR_NO_EMAIL);
        assert_eq!(
            label(&run(&["  "], &[TAG], &[], None)),
            labels::ERROR_NO_EMAIL
        );
        assert_eq!(
            label(&run(&["a@b.c"], &[], &[], None)),
            labels::ERROR_NO_PACKAGE_TAG
        );
        assert_eq!(
            label(&run(
                &["a@b.c"],
                &[TAG],
                &["JUSTIFACTS BGC PKG: EmpCod[ID : 1]"],
                None
            )),
            labels::ERROR_CONFLICTING_PACKAGE_TAGS
        );
        assert_eq!(
            label(&run(
                &["a@b.c"],
                &["JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]"],
                &[],
                None
            )),
            labels::ERROR_INVALID_PACKAGE_TAG
        );
    }

    #[test]
    fn no_email_note_mentions_package_problem_too() {
        let Plan::Refuse { note, .. } = run(&[], &[], &[], None) else {
            panic!("expected a refusal");
        };
        assert!(note.contains("Add an email address"));
        assert!(note.contains("move the candidate to Background Check again"));
        assert!(note.contains("no package tag"));
    }

    #[test]
    fn explicit_package_overrides_tags() {
        assert_eq!(
            run(&["a@b.c"], &[TAG], &[], Some("777")),
            Plan::Order {
                package_code: "777".into(),
                email: "a@b.c".into()
            }
        );
        assert_eq!(
            label(&run(&["a@b.c"], &[TAG], &[], Some("Gold"))),
            labels::ERROR_INVALID_PACKAGE_TAG
        );
        // A blank explicit package falls back to tags.
        assert!(matches!(
            run(&["a@b.c"], &[TAG], &[], Some(" ")),
            Plan::Order { .. }
        ));
    }
}
