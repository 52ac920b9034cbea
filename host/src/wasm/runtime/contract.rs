//! Which contract a compiled component speaks: its `switchyard:connector/*` imports and exports and
//! their versions, checked before linking so a rejection says exactly what is wrong ("wrong world",
//! "incompatible contract version", naming the versions served) rather than a linker error.
//!
//! The host serves several contract versions side by side ([`SERVED`]); the version of the
//! exported `switchyard:connector/screening` picks the bindings, and every other
//! `switchyard:connector/*` name of the component must be the same minor.

use wasmtime::component::Component;
use wasmtime::Engine;

use super::LoadError;

/// The contract package this host implements.
pub const PACKAGE: &str = "switchyard:connector";
/// A contract version the host serves (each with its own generated bindings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ContractVersion {
    /// `switchyard:connector@0.1.*`, `wit/0.1.0/connector.wit` (frozen).
    V0_1,
    /// `switchyard:connector@0.2.*`, `wit/connector.wit` (0.2.1; 0.2.0 frozen in `wit/0.2.0/`).
    V0_2,
}

/// Every served version, oldest first, with the (major, minor, patch) the host implements.
pub const SERVED: [(ContractVersion, (u64, u64, u64)); 2] = [
    (ContractVersion::V0_1, (0, 1, 0)),
    (ContractVersion::V0_2, (0, 2, 1)),
];

/// The newest served version (`package switchyard:connector@0.2.1` in `wit/connector.wit`).
pub const VERSION: (u64, u64, u64) = (0, 2, 1);
/// The interface every connector must export.
pub const SCREENING: &str = "switchyard:connector/screening";

/// A component's imports and exports, by name (e.g. `switchyard:connector/screening@0.1.0`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Surface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl Surface {
    /// Reads the names from a compiled component.
    pub fn of(component: &Component, engine: &Engine) -> Surface {
        let ty = component.component_type();
        Surface {
            imports: ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
            exports: ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
        }
    }

    /// The served version the component speaks and the exact version its `screening` export
    /// names (e.g. `0.1.0`); otherwise why it cannot be served.
    pub fn check(&self) -> Result<(ContractVersion, String), LoadError> {
        let Some(screening) = self.exports.iter().find(|n| base(n) == SCREENING) else {
            return Err(LoadError::WrongWorld(format!(
                "it does not export `{SCREENING}` (its exports: {})",
                list(&self.exports)
            )));
        };
        let exported = version_of(screening).ok_or_else(|| {
            LoadError::Incompatible(format!("`{screening}` carries no version; {}", served()))
        })?;
        let Some(version) = served_as(exported) else {
            return Err(LoadError::Incompatible(format!(
                "`{screening}` is contract version {exported}; {}",
                served()
            )));
        };
        for name in self.imports.iter().chain(self.exports.iter()) {
            if !name.starts_with(&format!("{PACKAGE}/")) {
                continue;
            }
            let v = version_of(name)
                .ok_or_else(|| LoadError::Incompatible(format!("`{name}` carries no version")))?;
            if served_as(v) != Some(version) {
                return Err(LoadError::Incompatible(format!(
                    "`{name}` is contract version {v} but its `screening` export is {exported}; \
                     a component speaks one version. {}",
                    served()
                )));
            }
        }
        Ok((version, exported.to_string()))
    }
}

/// "this host serves 0.1.* and 0.2.*", for refusals.
pub fn served() -> String {
    let versions: Vec<String> = SERVED
        .iter()
        .map(|(_, (ma, mi, _))| {
            if *ma == 0 {
                format!("{ma}.{mi}.*")
            } else {
                format!("{ma}.*")
            }
        })
        .collect();
    format!(
        "this host serves switchyard:connector {}",
        versions.join(" and ")
    )
}

fn base(name: &str) -> &str {
    name.split('@').next().unwrap_or(name)
}

fn version_of(name: &str) -> Option<&str> {
    name.split_once('@').map(|(_, v)| v)
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// The served version `version` is semver-compatible with: same major, and for 0.x the same
/// minor (a newer patch of a served minor is accepted: patches only add what old hosts ignore).
fn served_as(version: &str) -> Option<ContractVersion> {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let parts: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    let [Some(major), Some(minor), Some(_patch)] = parts[..] else {
        return None;
    };
    SERVED
        .iter()
        .find(|(_, (ma, mi, _))| major == *ma && (*ma != 0 || minor == *mi))
        .map(|(v, _)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_compatibility_of_contract_versions() {
        assert_eq!(served_as("0.1.0"), Some(ContractVersion::V0_1));
        assert_eq!(served_as("0.1.7"), Some(ContractVersion::V0_1));
        assert_eq!(served_as("0.2.0"), Some(ContractVersion::V0_2));
        assert_eq!(served_as("0.2.3"), Some(ContractVersion::V0_2));
        assert_eq!(served_as("0.3.0"), None);
        assert_eq!(served_as("1.0.0"), None);
        assert_eq!(served_as("garbage"), None);
    }

    fn surface(version: &str) -> Surface {
        Surface {
            imports: vec![format!("switchyard:connector/log@{version}")],
            exports: vec![format!("switchyard:connector/screening@{version}")],
        }
    }

    #[test]
    fn the_screening_export_picks_the_version() {
        assert_eq!(
            surface("0.1.0").check().unwrap(),
            (ContractVersion::V0_1, "0.1.0".to_string())
        );
        assert_eq!(
            surface("0.2.0").check().unwrap(),
            (ContractVersion::V0_2, "0.2.0".to_string())
        );
        assert_eq!(
            surface("0.2.1").check().unwrap(),
            (ContractVersion::V0_2, "0.2.1".to_string())
        );
    }

    #[test]
    fn unserved_or_mixed_versions_are_refused_naming_what_is_served() {
        let s = Surface {
            imports: vec![],
            exports: vec!["hello".into()],
        };
        assert!(matches!(s.check(), Err(LoadError::WrongWorld(_))));
        for v in ["0.3.0", "1.0.0"] {
            let e = surface(v).check().unwrap_err();
            assert!(matches!(e, LoadError::Incompatible(_)), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(v) && text.contains("0.1.* and 0.2.*"),
                "{text}"
            );
        }
        let mixed = Surface {
            imports: vec!["switchyard:connector/log@0.1.0".into()],
            exports: vec!["switchyard:connector/screening@0.2.0".into()],
        };
        assert!(matches!(mixed.check(), Err(LoadError::Incompatible(_))));
    }
}
