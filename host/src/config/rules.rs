//! `[[integrations.rules]]`: which package (assessment) a candidate gets when they reach a stage
//! on a posting. An ATS-neutral host capability; any connector's packages can be named.
//!
//! A rule is `(posting, stage) → package`. `posting` is matched against the ATS's posting name
//! (Lever: the posting's `text`, case-insensitive) or its id (exact); omitted, it matches every
//! posting. `stage` is a stage name (case-insensitive); omitted, it is the integration's trigger
//! stage (`ats.trigger_stage`, else the connector's default trigger stage).
//!
//! An integration without rules behaves as before: one implicit rule "every posting, trigger
//! stage → the connector's own choice" (its default package, overridable by tags). Deciding is
//! [`crate::flow::rules`]; checking the package against the connector's `list-packages` is done
//! when the admin API saves the integration.

use serde::{Deserialize, Serialize};

/// One rule.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Posting name (Lever `text`, case-insensitive) or posting id; `None`: every posting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub posting: Option<String>,
    /// Stage name (case-insensitive); `None`: the integration's trigger stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// The package to send: one of the connector's `list-packages` names (case-insensitive).
    pub package: String,
}

/// Compares names the way recruiters type them.
pub fn same_name(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// Checks what serde cannot: non-empty fields and no two rules for the same (posting, stage).
pub fn check(rules: &[RuleConfig]) -> Result<(), String> {
    for (i, rule) in rules.iter().enumerate() {
        let n = i + 1;
        if rule.package.trim().is_empty() {
            return Err(format!("rule {n}: `package` must not be empty"));
        }
        if rule.posting.as_deref().is_some_and(|p| p.trim().is_empty()) {
            return Err(format!(
                "rule {n}: `posting` must not be empty (omit it for every posting)"
            ));
        }
        if rule.stage.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(format!(
                "rule {n}: `stage` must not be empty (omit it for the trigger stage)"
            ));
        }
        let key = |r: &RuleConfig| {
            (
                r.posting.as_deref().map(|p| p.trim().to_lowercase()),
                r.stage.as_deref().map(|s| s.trim().to_lowercase()),
            )
        };
        if let Some(j) = rules[..i].iter().position(|other| key(other) == key(rule)) {
            return Err(format!(
                "rules {} and {n} are both for posting {} at stage {}",
                j + 1,
                describe(rule.posting.as_deref(), "(any)"),
                describe(rule.stage.as_deref(), "(the trigger stage)")
            ));
        }
    }
    Ok(())
}

fn describe(v: Option<&str>, none: &str) -> String {
    v.map(|s| format!("{s:?}"))
        .unwrap_or_else(|| none.to_string())
}

/// The rules whose package is not among `offered` (the connector's packages), as an error that
/// lists the valid ones; `Ok` when every rule names an offered package.
pub fn check_packages(rules: &[RuleConfig], offered: &[String]) -> Result<(), String> {
    let unknown: Vec<&str> = rules
        .iter()
        .map(|r| r.package.as_str())
        .filter(|p| !offered.iter().any(|o| same_name(o, p)))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    let quote = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
    Err(format!(
        "the vendor does not offer {}; valid packages: {}",
        quote(&unknown),
        if offered.is_empty() {
            "(none)".to_string()
        } else {
            quote(&offered)
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(posting: Option<&str>, stage: Option<&str>, package: &str) -> RuleConfig {
        RuleConfig {
            posting: posting.map(str::to_string),
            stage: stage.map(str::to_string),
            package: package.into(),
        }
    }

    #[test]
    fn empty_fields_and_duplicate_pairs_are_refused() {
        assert!(check(&[rule(
            Some("Python Developer"),
            Some("Canditech Stage"),
            "Python senior"
        )])
        .is_ok());
        assert!(check(&[rule(None, None, " ")])
            .unwrap_err()
            .contains("package"));
        assert!(check(&[rule(Some(""), None, "P")])
            .unwrap_err()
            .contains("posting"));
        let dup = check(&[
            rule(Some("Python Developer"), Some("Canditech Stage"), "A"),
            rule(Some("python developer "), Some("canditech stage"), "B"),
        ])
        .unwrap_err();
        assert!(dup.contains("rules 1 and 2"), "{dup}");
    }

    #[test]
    fn unknown_packages_are_named_with_the_valid_ones() {
        let offered = vec!["Python senior".to_string(), "JavaScript mid".to_string()];
        assert!(check_packages(&[rule(None, None, "python SENIOR")], &offered).is_ok());
        let e = check_packages(&[rule(None, None, "Go expert")], &offered).unwrap_err();
        assert_eq!(
            e,
            "the vendor does not offer \"Go expert\"; valid packages: \"Python senior\", \"JavaScript mid\""
        );
    }
}
