//! Which Certn package a screening request uses.
//!
//! Certn's Lever integration has one default package that a candidate tag naming another package
//! overrides; an ATS that lets the recruiter pick a package (Gem) names it explicitly.

/// The part of a configured package that selection looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageRef<'a> {
    /// The package name, as configured.
    pub name: &'a str,
    /// Whether this is the integration's default package.
    pub is_default: bool,
}

/// Why a package was chosen, so the caller can log it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The request named it explicitly.
    Explicit,
    /// A tag matched it; `also_matched` lists other non-default packages whose tags matched too
    /// (they lost because they come later in configuration order).
    Tag {
        /// Names of the other matching packages, in configuration order.
        also_matched: Vec<String>,
    },
    /// No explicit choice and no tag matched.
    Default,
}

/// The chosen package: its index in the configured list and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Index into the slice passed to [`select_package`].
    pub index: usize,
    /// Why it was chosen.
    pub reason: Reason,
}

/// Why no package could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SelectError {
    /// The request named a package that is not configured (a permanent rejection).
    Unknown(String),
    /// No package is configured, or none is the default (an operator problem).
    NoDefault,
}

/// Compares package names and tags the way recruiters type them: trimmed, case-insensitive.
pub fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    !a.is_empty() && a.to_lowercase() == b.to_lowercase()
}

/// Chooses the package for a request.
///
/// Order of precedence: the explicitly requested package (which must exist), then the first
/// non-default package in configuration order whose name equals one of `tags`, then the default.
pub fn select_package<'t>(
    packages: &[PackageRef<'_>],
    explicit: Option<&str>,
    tags: impl IntoIterator<Item = &'t str>,
) -> Result<Selection, SelectError> {
    if let Some(wanted) = explicit {
        return packages
            .iter()
            .position(|p| same_name(p.name, wanted))
            .map(|index| Selection {
                index,
                reason: Reason::Explicit,
            })
            .ok_or_else(|| SelectError::Unknown(wanted.trim().to_string()));
    }

    let tags: Vec<&str> = tags.into_iter().collect();
    let mut matched = packages
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.is_default && tags.iter().any(|t| same_name(p.name, t)));
    if let Some((index, _)) = matched.next() {
        let also_matched = matched.map(|(_, p)| p.name.to_string()).collect();
        return Ok(Selection {
            index,
            reason: Reason::Tag { also_matched },
        });
    }

    packages
        .iter()
        .position(|p| p.is_default)
        .map(|index| Selection {
            index,
            reason: Reason::Default,
        })
        .ok_or(SelectError::NoDefault)
}

/// The Certn `request_*` flags a package's `checks` parameter asks for.
///
/// `checks` is comma-separated (`criminal_record_check, identity_verification`); a `request_`
/// prefix an operator may have typed is accepted and not doubled.
pub fn request_flags(checks: &str) -> Vec<String> {
    checks
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| {
            let c = c.to_lowercase();
            let c = c.strip_prefix("request_").unwrap_or(&c);
            format!("request_{c}")
        })
        .collect()
}

/// Refuses a package that asks for no Certn service: Certn's own setup requires "at least one
/// service" per package (seed 000), and an invitation without any `request_*` flag would send the
/// candidate an empty check. `checks` is the package's `checks` parameter, if any.
pub fn require_service(name: &str, checks: Option<&str>) -> Result<Vec<String>, String> {
    let flags = checks.map(request_flags).unwrap_or_default();
    if flags.is_empty() {
        return Err(format!(
            "Certn package {name:?} has no service: give it a `checks` parameter naming at least \
             one Certn service (e.g. checks = \"criminal_record_check\")"
        ));
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKGS: [PackageRef<'static>; 3] = [
        PackageRef {
            name: "Basic",
            is_default: true,
        },
        PackageRef {
            name: "Enhanced",
            is_default: false,
        },
        PackageRef {
            name: "Executive",
            is_default: false,
        },
    ];

    #[test]
    fn explicit_package_wins_and_is_case_insensitive() {
        let s = select_package(&PKGS, Some("  executive "), ["enhanced"]).unwrap();
        assert_eq!(s.index, 2);
        assert_eq!(s.reason, Reason::Explicit);
    }

    #[test]
    fn unknown_explicit_package_is_rejected() {
        assert_eq!(
            select_package(&PKGS, Some("Gold"), []),
            Err(SelectError::Unknown("Gold".into()))
        );
    }

    #[test]
    fn tag_overrides_default() {
        let s = select_package(&PKGS, None, ["remote", " ENHANCED "]).unwrap();
        assert_eq!(s.index, 1);
    }

    #[test]
    fn several_tags_pick_first_in_config_order() {
        let s = select_package(&PKGS, None, ["executive", "enhanced"]).unwrap();
        assert_eq!(s.index, 1);
        assert_eq!(
            s.reason,
            Reason::Tag {
                also_matched: vec!["Executive".into()]
            }
        );
    }

    #[test]
    fn tag_naming_the_default_is_just_the_default() {
        let s = select_package(&PKGS, None, ["basic"]).unwrap();
        assert_eq!(s.index, 0);
        assert_eq!(s.reason, Reason::Default);
    }

    #[test]
    fn no_tag_falls_back_to_default() {
        let s = select_package(&PKGS, None, ["engineering"]).unwrap();
        assert_eq!((s.index, s.reason), (0, Reason::Default));
    }

    #[test]
    fn empty_tag_matches_nothing() {
        let pkgs = [
            PackageRef {
                name: "Basic",
                is_default: true,
            },
            PackageRef {
                name: " ",
                is_default: false,
            },
        ];
        assert_eq!(select_package(&pkgs, None, [""]).unwrap().index, 0);
    }

    #[test]
    fn nothing_configured_is_a_config_error() {
        assert_eq!(select_package(&[], None, []), Err(SelectError::NoDefault));
        let no_default = [PackageRef {
            name: "Enhanced",
            is_default: false,
        }];
        assert_eq!(
            select_package(&no_default, None, []),
            Err(SelectError::NoDefault)
        );
    }

    #[test]
    fn request_flags_from_checks() {
        assert_eq!(
            request_flags("criminal_record_check, identity_verification,,request_credit_check"),
            vec![
                "request_criminal_record_check",
                "request_identity_verification",
                "request_credit_check"
            ]
        );
        assert!(request_flags(" ").is_empty());
    }

    #[test]
    fn a_package_needs_at_least_one_service() {
        assert_eq!(
            require_service("Basic", Some("criminal_record_check")),
            Ok(vec!["request_criminal_record_check".to_string()])
        );
        for checks in [None, Some(""), Some(" , ")] {
            let err = require_service("Basic", checks).unwrap_err();
            assert!(
                err.contains("\"Basic\" has no service") && err.contains("checks"),
                "{err}"
            );
        }
    }
}
