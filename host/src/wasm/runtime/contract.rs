//! Which contract a compiled component speaks: its `switchyard:connector/*` imports and exports and
//! their versions, checked before linking so a rejection says exactly what is wrong ("wrong world",
//! "incompatible contract version") rather than a linker error.

use wasmtime::component::Component;
use wasmtime::Engine;

use super::LoadError;

/// The contract package this host implements.
pub const PACKAGE: &str = "switchyard:connector";
/// The host's contract version (`package switchyard:connector@0.1.0` in `wit/connector.wit`).
pub const VERSION: (u64, u64, u64) = (0, 1, 0);
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

    /// The contract version the component was built against, if it is compatible with the host's;
    /// otherwise why not.
    pub fn check(&self) -> Result<String, LoadError> {
        let Some(screening) = self.exports.iter().find(|n| base(n) == SCREENING) else {
            return Err(LoadError::WrongWorld(format!(
                "it does not export `{SCREENING}` (its exports: {})",
                list(&self.exports)
            )));
        };
        for name in self.imports.iter().chain(self.exports.iter()) {
            if !name.starts_with(&format!("{PACKAGE}/")) {
                continue;
            }
            let version = version_of(name)
                .ok_or_else(|| LoadError::Incompatible(format!("`{name}` carries no version")))?;
            if !compatible(version) {
                let (ma, mi, pa) = VERSION;
                return Err(LoadError::Incompatible(format!(
                    "`{name}` is contract version {version}; this host speaks {ma}.{mi}.{pa} and accepts {}",
                    if ma == 0 { format!("{ma}.{mi}.*") } else { format!("{ma}.*") }
                )));
            }
        }
        Ok(version_of(screening).unwrap_or_default().to_string())
    }
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

/// Semver compatibility with [`VERSION`]: same major, and for 0.x the same minor.
fn compatible(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or(version);
    let parts: Vec<Option<u64>> = core.split('.').map(|p| p.parse().ok()).collect();
    let [Some(major), Some(minor), Some(_patch)] = parts[..] else {
        return false;
    };
    let (ma, mi, _) = VERSION;
    major == ma && (ma != 0 || minor == mi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver_compatibility_of_contract_versions() {
        assert!(compatible("0.1.0"));
        assert!(compatible("0.1.7"));
        assert!(!compatible("0.2.0"));
        assert!(!compatible("1.0.0"));
        assert!(!compatible("garbage"));
    }

    #[test]
    fn a_component_without_the_screening_export_is_the_wrong_world() {
        let s = Surface {
            imports: vec![],
            exports: vec!["hello".into()],
        };
        assert!(matches!(s.check(), Err(LoadError::WrongWorld(_))));
        let s = Surface {
            imports: vec!["switchyard:connector/log@0.2.0".into()],
            exports: vec!["switchyard:connector/screening@0.2.0".into()],
        };
        assert!(matches!(s.check(), Err(LoadError::Incompatible(_))));
    }
}
