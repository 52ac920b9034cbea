//! Choosing the Justifacts package code for a screening.
//!
//! Recruiters pick a package by tagging the Lever posting with
//! `JUSTIFACTS BGC PKG: EmpCod[ID : 13558]`. Lever copies posting tags onto each opportunity, so
//! the same tag normally shows up twice; that is one code, not a conflict. Tags are typed by hand,
//! so the *shape* is parsed tolerantly (any case for the words, any spacing around `:`, `[`, `]`),
//! while the *code* is parsed strictly (one or more ASCII digits) because ordering the wrong
//! background check is worse than asking the recruiter to fix a tag.

/// What one tag says about the package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagParse {
    /// Not a Justifacts package tag at all (some other tag on the posting).
    NotPackageTag,
    /// A well-formed package tag with this numeric code.
    Code(String),
    /// Starts with the package-tag prefix, but the rest cannot be read.
    Invalid,
}

/// The package decision for one screening request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Exactly one package code: order it.
    Code(String),
    /// No package tag (and no explicit package) at all.
    NoTag,
    /// Two or more different codes, in the order they were found.
    Conflicting(Vec<String>),
    /// The offending tags (or explicit package value), deduplicated.
    Invalid(Vec<String>),
}

/// A minimal cursor for the hand-written tag grammar; a regex crate would be overkill in a
/// size-sensitive component.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        self.rest = self.rest.trim_start();
    }

    /// Consumes `word` if the input starts with it, ignoring ASCII case.
    fn eat_ci(&mut self, word: &str) -> bool {
        let n = word.len();
        match self.rest.get(..n) {
            Some(head) if head.eq_ignore_ascii_case(word) => {
                self.rest = &self.rest[n..];
                true
            }
            _ => false,
        }
    }

    fn eat_char(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }
}

/// Parses one tag.
///
/// Grammar (case-insensitive words, `_` = any amount of whitespace including none):
/// `_ justifacts _ bgc _ pkg _ : _ empcod _ [ _ id _ : _ DIGITS _ ] _`
pub fn parse_tag(tag: &str) -> TagParse {
    let mut c = Cursor { rest: tag };
    for word in ["justifacts", "bgc", "pkg"] {
        c.skip_ws();
        if !c.eat_ci(word) {
            return TagParse::NotPackageTag;
        }
    }
    // From here on the tag is clearly meant as a package tag: any deviation is "invalid", so the
    // recruiter hears about the typo instead of the tag being silently ignored.
    let shape_ok = {
        c.skip_ws();
        let a = c.eat_char(':');
        c.skip_ws();
        let b = c.eat_ci("empcod");
        c.skip_ws();
        let d = c.eat_char('[');
        c.skip_ws();
        let e = c.eat_ci("id");
        c.skip_ws();
        let f = c.eat_char(':');
        a && b && d && e && f
    };
    if !shape_ok {
        return TagParse::Invalid;
    }
    let Some(close) = c.rest.find(']') else {
        return TagParse::Invalid;
    };
    let code = c.rest[..close].trim();
    let after = c.rest[close + 1..].trim();
    if !after.is_empty() || !is_code(code) {
        return TagParse::Invalid;
    }
    TagParse::Code(code.to_string())
}

/// True for a syntactically valid package code: one or more ASCII digits, nothing else.
pub fn is_code(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Decides the package from posting tags and opportunity tags (searched together).
///
/// Precedence: two or more distinct codes → conflicting; otherwise any unreadable package tag →
/// invalid (it might have been meant as a different package than the readable one, so ordering
/// would be a guess); otherwise one code → that code; otherwise no tag.
pub fn resolve_tags<'a, I>(tags: I) -> Resolution
where
    I: IntoIterator<Item = &'a str>,
{
    let mut codes: Vec<String> = Vec::new();
    let mut invalid: Vec<String> = Vec::new();
    for tag in tags {
        match parse_tag(tag) {
            TagParse::NotPackageTag => {}
            TagParse::Code(code) => {
                if !codes.contains(&code) {
                    codes.push(code);
                }
            }
            TagParse::Invalid => {
                let tag = tag.trim().to_string();
                if !invalid.contains(&tag) {
                    invalid.push(tag);
                }
            }
        }
    }
    if codes.len() >= 2 {
        Resolution::Conflicting(codes)
    } else if !invalid.is_empty() {
        Resolution::Invalid(invalid)
    } else if let Some(code) = codes.pop() {
        Resolution::Code(code)
    } else {
        Resolution::NoTag
    }
}

/// The parameter of a configured package that holds its Justifacts package code.
pub const PACKAGE_CODE_PARAM: &str = "package-code";

/// A configured package, reduced to what resolution needs (keeps this module free of bindings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredPackage {
    /// The package's name as recruiters see it.
    pub name: String,
    /// Its `package-code` parameter, if set.
    pub code: Option<String>,
}

/// Decides the package from an explicitly chosen package (Gem's send dialog), which overrides
/// tags: a bare code (`13558`), a full tag (`JUSTIFACTS BGC PKG: EmpCod[ID : 13558]`), or the name
/// of a configured package whose `package-code` parameter is a code. Returns `None` for a blank
/// value so the caller falls back to tags.
pub fn resolve_explicit(value: &str, configured: &[ConfiguredPackage]) -> Option<Resolution> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if is_code(value) {
        return Some(Resolution::Code(value.to_string()));
    }
    Some(match parse_tag(value) {
        TagParse::Code(code) => Resolution::Code(code),
        TagParse::Invalid => Resolution::Invalid(vec![value.to_string()]),
        TagParse::NotPackageTag => {
            let by_name = configured
                .iter()
                .find(|p| p.name.trim().eq_ignore_ascii_case(value))
                .and_then(|p| p.code.as_deref())
                .map(str::trim)
                .filter(|code| is_code(code));
            match by_name {
                Some(code) => Resolution::Code(code.to_string()),
                None => Resolution::Invalid(vec![value.to_string()]),
            }
        }
    })
}

/// An example tag for notes, so the recruiter can copy the exact shape.
pub const EXAMPLE_TAG: &str = "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]";

/// What a note asks the recruiter to do once the data is fixed: move the candidate into the
/// integration's trigger stage again, named as the request named it (`stage`; "the trigger
/// stage" when the request did not come from a stage change).
pub fn retry_step(stage: Option<&str>) -> String {
    match stage.map(str::trim).filter(|s| !s.is_empty()) {
        Some(stage) => format!("move the candidate to {stage} again"),
        None => "move the candidate to the trigger stage again".to_string(),
    }
}

/// The recruiter-facing note for a resolution that cannot be ordered (`None` for a code); `stage`
/// is the trigger stage the request came from (see [`retry_step`]). Never contains secrets; tags
/// and codes are the recruiter's own data.
pub fn problem_note(resolution: &Resolution, stage: Option<&str>) -> Option<String> {
    let retry = retry_step(stage);
    match resolution {
        Resolution::Code(_) => None,
        Resolution::NoTag => Some(format!(
            "Justifacts: no package tag found on the posting. Add a posting tag such as \
             `{EXAMPLE_TAG}`, then {retry}."
        )),
        Resolution::Conflicting(codes) => Some(format!(
            "Justifacts: the posting and opportunity tags name {} different packages ({}). Keep \
             exactly one tag such as `{EXAMPLE_TAG}`, remove the others, then {retry}.",
            codes.len(),
            codes.join(", ")
        )),
        Resolution::Invalid(tags) => Some(format!(
            "Justifacts: the package tag {} could not be read. Package tags must look exactly \
             like `{EXAMPLE_TAG}`, where the ID is the numeric package code from JWeb. Fix the \
             tag, then {retry}.",
            tags.iter()
                .map(|t| format!("`{t}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> TagParse {
        TagParse::Code(s.to_string())
    }

    #[test]
    fn documented_tag() {
        assert_eq!(
            parse_tag("JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"),
            code("13558")
        );
    }

    #[test]
    fn spacing_variants() {
        for tag in [
            "justifacts bgc pkg:EmpCod[ID:13558]",
            "JUSTIFACTS BGC PKG : EmpCod [ ID : 13558 ]",
            "  JUSTIFACTS   BGC\tPKG:EmpCod[ID :13558]  ",
            "JUSTIFACTS BGC PKG:  EmpCod[  ID:  13558]",
            "JUSTIFACTSBGCPKG:EmpCod[ID:13558]",
        ] {
            assert_eq!(parse_tag(tag), code("13558"), "{tag:?}");
        }
    }

    #[test]
    fn case_of_prefix_and_words() {
        for tag in [
            "Justifacts Bgc Pkg: EmpCod[ID : 13558]",
            "jUsTiFaCtS bGc PkG: empcod[id : 13558]",
            "JUSTIFACTS BGC PKG: EMPCOD[Id : 13558]",
        ] {
            assert_eq!(parse_tag(tag), code("13558"), "{tag:?}");
        }
    }

    #[test]
    fn code_must_be_digits() {
        for tag in [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : ]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 135 58]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : -13558]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558.0]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : １３５５８]", // full-width digits are not ASCII
        ] {
            assert_eq!(parse_tag(tag), TagParse::Invalid, "{tag:?}");
        }
    }

    #[test]
    fn broken_shape_is_invalid_not_ignored() {
        for tag in [
            "JUSTIFACTS BGC PKG",
            "JUSTIFACTS BGC PKG:",
            "JUSTIFACTS BGC PKG 13558",
            "JUSTIFACTS BGC PKG: 13558",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558",
            "JUSTIFACTS BGC PKG: EmpCod ID : 13558]",
            "JUSTIFACTS BGC PKG: EmpCod[13558]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558] extra",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]]",
        ] {
            assert_eq!(parse_tag(tag), TagParse::Invalid, "{tag:?}");
        }
    }

    #[test]
    fn unrelated_tags() {
        for tag in [
            "",
            "Engineering",
            "Remote",
            "CERTN PKG: Basic",
            "justifacts",
            "Justifacts BGC",
            "(Justifacts)In-Progress : Candidate",
            "(Justifacts)Complete",
            "BGC PKG: EmpCod[ID : 13558]",
            "My JUSTIFACTS BGC PKG: EmpCod[ID : 13558]",
        ] {
            assert_eq!(parse_tag(tag), TagParse::NotPackageTag, "{tag:?}");
        }
    }

    #[test]
    fn multibyte_input_does_not_panic() {
        // `get(..n)` must not split a UTF-8 character.
        assert_eq!(parse_tag("é"), TagParse::NotPackageTag);
        assert_eq!(parse_tag("justifacts bgc pkg:é"), TagParse::Invalid);
        assert_eq!(parse_tag("ジャスティファクツ"), TagParse::NotPackageTag);
    }

    #[test]
    fn same_code_twice_is_one_code() {
        // Lever copies posting tags onto the opportunity: the same code in both places.
        let posting = ["Engineering", "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]"];
        let opportunity = ["JUSTIFACTS BGC PKG: EmpCod[ID : 13558]", "Referral"];
        assert_eq!(
            resolve_tags(posting.into_iter().chain(opportunity)),
            Resolution::Code("13558".into())
        );
        // ...even when spelled differently.
        let tags = [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]",
            "justifacts bgc pkg:EmpCod[ID:13558]",
        ];
        assert_eq!(resolve_tags(tags), Resolution::Code("13558".into()));
    }

    #[test]
    fn two_codes_conflict() {
        let tags = [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 20001]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]",
        ];
        assert_eq!(
            resolve_tags(tags),
            Resolution::Conflicting(vec!["13558".into(), "20001".into()])
        );
    }

    #[test]
    fn conflict_wins_over_invalid() {
        let tags = [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 1]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 2]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : x]",
        ];
        assert!(matches!(resolve_tags(tags), Resolution::Conflicting(_)));
    }

    #[test]
    fn invalid_alongside_valid_is_invalid() {
        let tags = [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13558]",
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]",
        ];
        assert_eq!(
            resolve_tags(tags),
            Resolution::Invalid(vec!["JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]".into()])
        );
    }

    #[test]
    fn invalid_duplicates_are_reported_once() {
        let tags = [
            "JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]",
            " JUSTIFACTS BGC PKG: EmpCod[ID : 13a58] ",
        ];
        assert_eq!(
            resolve_tags(tags),
            Resolution::Invalid(vec![tags[0].into()])
        );
    }

    #[test]
    fn no_tags() {
        assert_eq!(resolve_tags([]), Resolution::NoTag);
        assert_eq!(resolve_tags(["Engineering", "Remote"]), Resolution::NoTag);
    }

    #[test]
    fn explicit_package() {
        let configured = vec![
            ConfiguredPackage {
                name: "Standard".into(),
                code: Some("13558".into()),
            },
            ConfiguredPackage {
                name: "Broken".into(),
                code: Some("abc".into()),
            },
        ];
        assert_eq!(resolve_explicit("  ", &configured), None);
        assert_eq!(
            resolve_explicit("20001", &configured),
            Some(Resolution::Code("20001".into()))
        );
        assert_eq!(
            resolve_explicit("justifacts bgc pkg:EmpCod[ID:777]", &configured),
            Some(Resolution::Code("777".into()))
        );
        assert_eq!(
            resolve_explicit("standard", &configured),
            Some(Resolution::Code("13558".into()))
        );
        assert!(matches!(
            resolve_explicit("Broken", &configured),
            Some(Resolution::Invalid(_))
        ));
        assert!(matches!(
            resolve_explicit("Gold", &configured),
            Some(Resolution::Invalid(_))
        ));
        assert!(matches!(
            resolve_explicit("JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]", &configured),
            Some(Resolution::Invalid(_))
        ));
    }

    #[test]
    fn notes_tell_the_recruiter_what_to_fix() {
        let stage = Some("Background Check");
        let no_tag = problem_note(&Resolution::NoTag, stage).unwrap_or_default();
        assert!(no_tag.contains(EXAMPLE_TAG));
        assert!(no_tag.contains("move the candidate to Background Check again"));
        let conflict = problem_note(
            &Resolution::Conflicting(vec!["1".into(), "2".into()]),
            stage,
        )
        .unwrap_or_default();
        assert!(conflict.contains("1, 2"));
        let invalid = problem_note(
            &Resolution::Invalid(vec!["JUSTIFACTS BGC PKG: x".into()]),
            stage,
        )
        .unwrap_or_default();
        assert!(invalid.contains("`JUSTIFACTS BGC PKG: x`"));
        assert_eq!(problem_note(&Resolution::Code("1".into()), stage), None);
    }

    #[test]
    fn notes_name_the_integrations_own_trigger_stage() {
        // An integration triggered on another stage must not send recruiters to "Background
        // Check", a stage their pipeline may not have.
        let note = problem_note(&Resolution::NoTag, Some(" Verification ")).unwrap_or_default();
        assert!(
            note.ends_with("then move the candidate to Verification again."),
            "{note}"
        );
        assert!(!note.contains("Background Check"), "{note}");
        let note = problem_note(&Resolution::NoTag, None).unwrap_or_default();
        assert!(
            note.contains("move the candidate to the trigger stage again"),
            "{note}"
        );
    }
}
