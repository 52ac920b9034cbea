//! Deciding whether a candidate who reached a stage gets a screening, and with which package:
//! the integration's `(posting, stage) → package` rules ([`crate::config::rules`]).
//!
//! In two steps, so that a stage no rule names costs no ATS read: [`at_stage`] (before the
//! candidacy is read) and [`pick`] (with the candidacy's posting).

use crate::config::rules::same_name;
use crate::config::RuleConfig;

/// A rule with its stage resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// `None`: every posting.
    pub posting: Option<String>,
    pub stage: String,
    /// `None`: the connector's own choice (the implicit rule of an integration without rules).
    pub package: Option<String>,
}

/// Why no screening starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoStart {
    /// Nothing to do here (recorded as the event's skip reason).
    Skip(String),
    /// The integration cannot decide (no trigger stage anywhere): an operator must fix it.
    Misconfigured(String),
}

/// The rules that apply at `stage`. `trigger` is the integration's trigger stage (or the
/// connector's default), used by rules without a stage and by the implicit rule.
pub fn at_stage(
    rules: &[RuleConfig],
    trigger: Option<&str>,
    stage: &str,
) -> Result<Vec<Rule>, NoStart> {
    if rules.is_empty() {
        let trigger =
            trigger.ok_or_else(|| NoStart::Misconfigured("no trigger stage configured".into()))?;
        if !same_name(stage, trigger) {
            return Err(NoStart::Skip(format!(
                "stage {stage:?} is not the trigger stage {trigger:?}"
            )));
        }
        return Ok(vec![Rule {
            posting: None,
            stage: trigger.to_string(),
            package: None,
        }]);
    }
    let resolved: Vec<Rule> = rules
        .iter()
        .filter_map(|r| {
            Some(Rule {
                posting: r.posting.clone(),
                stage: r.stage.clone().or_else(|| trigger.map(str::to_string))?,
                package: Some(r.package.clone()),
            })
        })
        .collect();
    let here: Vec<Rule> = resolved
        .iter()
        .filter(|r| same_name(&r.stage, stage))
        .cloned()
        .collect();
    if here.is_empty() {
        let mut stages: Vec<String> = Vec::new();
        for r in &resolved {
            if !stages.iter().any(|s| same_name(s, &r.stage)) {
                stages.push(r.stage.clone());
            }
        }
        return Err(NoStart::Skip(format!(
            "no rule for stage {stage:?} (rules are for stages {})",
            quoted(&stages)
        )));
    }
    Ok(here)
}

/// The rule for the candidacy's posting among `rules` (all at one stage): a rule naming the
/// posting (by name or id) wins over a rule for every posting. `None` for either part means the
/// ATS did not say.
pub fn pick<'a>(
    rules: &'a [Rule],
    posting_id: Option<&str>,
    posting_name: Option<&str>,
) -> Result<&'a Rule, NoStart> {
    let names = |p: &str| {
        posting_id.is_some_and(|id| id == p.trim()) || posting_name.is_some_and(|n| same_name(n, p))
    };
    if let Some(rule) = rules
        .iter()
        .find(|r| r.posting.as_deref().is_some_and(names))
    {
        return Ok(rule);
    }
    if let Some(rule) = rules.iter().find(|r| r.posting.is_none()) {
        return Ok(rule);
    }
    let postings: Vec<String> = rules.iter().filter_map(|r| r.posting.clone()).collect();
    let stage = rules.first().map(|r| r.stage.as_str()).unwrap_or_default();
    let this = match (posting_name, posting_id) {
        (Some(n), Some(id)) => format!("{n:?} ({id})"),
        (None, Some(id)) => id.to_string(),
        (Some(n), None) => format!("{n:?}"),
        (None, None) => "(none)".to_string(),
    };
    Err(NoStart::Skip(format!(
        "posting {this} has no rule at stage {stage:?} (rules there are for postings {})",
        quoted(&postings)
    )))
}

fn quoted(v: &[String]) -> String {
    v.iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ")
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
    fn without_rules_the_trigger_stage_starts_the_connectors_choice_for_every_posting() {
        let here = at_stage(&[], Some("Background Check"), "background check ").unwrap();
        let r = pick(&here, Some("p1"), Some("Anything")).unwrap();
        assert_eq!(r.package, None);
        assert_eq!(
            at_stage(&[], Some("Background Check"), "Offer"),
            Err(NoStart::Skip(
                "stage \"Offer\" is not the trigger stage \"Background Check\"".into()
            ))
        );
        assert!(matches!(
            at_stage(&[], None, "Offer"),
            Err(NoStart::Misconfigured(_))
        ));
    }

    #[test]
    fn a_rule_matches_its_posting_by_name_or_id_at_its_stage() {
        let rules = [
            rule(
                Some("Python Developer"),
                Some("Canditech Stage"),
                "Python senior",
            ),
            rule(Some("post-js"), Some("Canditech Stage"), "JavaScript mid"),
            rule(Some("Python Developer"), Some("Final"), "Customer support"),
        ];
        let here = at_stage(&rules, None, "canditech stage").unwrap();
        assert_eq!(here.len(), 2);
        let by_name = pick(&here, Some("post-py"), Some("python developer")).unwrap();
        assert_eq!(by_name.package.as_deref(), Some("Python senior"));
        let by_id = pick(&here, Some("post-js"), Some("Frontend")).unwrap();
        assert_eq!(by_id.package.as_deref(), Some("JavaScript mid"));

        let miss = pick(&here, Some("post-go"), Some("Go Developer")).unwrap_err();
        assert_eq!(
            miss,
            NoStart::Skip("posting \"Go Developer\" (post-go) has no rule at stage \"Canditech Stage\" (rules there are for postings \"Python Developer\", \"post-js\")".into())
        );
        let other_stage = at_stage(&rules, None, "Offer").unwrap_err();
        assert_eq!(
            other_stage,
            NoStart::Skip(
                "no rule for stage \"Offer\" (rules are for stages \"Canditech Stage\", \"Final\")"
                    .into()
            )
        );
    }

    #[test]
    fn a_rule_without_stage_uses_the_trigger_and_a_specific_rule_beats_a_catch_all() {
        let rules = [
            rule(None, None, "Standard"),
            rule(Some("Python Developer"), None, "Python senior"),
        ];
        let here = at_stage(&rules, Some("Canditech Stage"), "Canditech Stage").unwrap();
        assert_eq!(
            pick(&here, None, Some("Python Developer"))
                .unwrap()
                .package
                .as_deref(),
            Some("Python senior")
        );
        assert_eq!(
            pick(&here, None, None).unwrap().package.as_deref(),
            Some("Standard")
        );
        // No trigger stage anywhere: stage-less rules cannot apply.
        assert!(matches!(
            at_stage(&rules, None, "Canditech Stage"),
            Err(NoStart::Skip(_))
        ));
    }
}
