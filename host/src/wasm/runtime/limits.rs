//! Per-store sandbox limits: what a connector is granted, derived from its manifest's `limits`
//! within the operator's caps, and the plain-words refusal when it needs more.
//!
//! - The operator sets caps in `[runtime]`: `max_memory_mib` (largest linear memory of one
//!   instance) and `max_instances` (core instances per store), and `memory_mb`, the memory granted
//!   when a manifest does not say (every 0.1 connector, or `memory-mib: 0`).
//! - A 0.2 manifest may ask (`limits.memory-mib`, `limits.instances`); asking for more than a cap
//!   refuses the component, naming the limit, the value and the setting to raise.
//! - The manifest itself is read under the caps (its limits are not known before), then the
//!   component is instantiated again under its own grant, so a manifest that under-declares is
//!   refused at load, not on its first real call.
//! - Tables and memories per store follow the instance grant (toolchains define at most one of
//!   each per core instance; wasmtime's default would allow 10,000). The memory size cap applies to
//!   each linear memory.

use wasmtime::{StoreLimits, StoreLimitsBuilder};

use super::{InvokeError, LoadError};
use crate::wasm::types::Limits;

/// The operator's caps (from `[runtime]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// `runtime.max_memory_mib`.
    pub max_memory_mib: u32,
    /// `runtime.max_instances`.
    pub max_instances: u32,
    /// `runtime.memory_mb`: granted when the manifest asks for nothing.
    pub default_memory_mib: u32,
}

impl Default for Caps {
    /// The documented defaults: room for Rust (3 core instances), JavaScript (4) and Python (14,
    /// ~12.5 MiB at start) components.
    fn default() -> Self {
        Caps {
            max_memory_mib: 256,
            max_instances: 32,
            default_memory_mib: 64,
        }
    }
}

/// What one connector's stores get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Grant {
    /// Largest linear memory, MiB.
    pub memory_mib: u32,
    /// Core instances (and tables, memories) per store.
    pub instances: u32,
}

impl Caps {
    /// The caps `[runtime]` sets. Built here, not in `config`, so the configuration does not
    /// depend on the runtime.
    pub fn of(config: &crate::config::RuntimeConfig) -> Caps {
        Caps {
            max_memory_mib: config.max_memory_mib,
            max_instances: config.max_instances,
            default_memory_mib: config.memory_mb,
        }
    }

    /// The grant while nothing is known about the component (reading its manifest).
    pub fn ceiling(&self) -> Grant {
        Grant {
            memory_mib: self.max_memory_mib,
            instances: self.max_instances,
        }
    }

    /// What a connector declaring `needs` gets, or why it cannot be served.
    pub fn grant(&self, needs: &Limits) -> Result<Grant, LoadError> {
        if needs.memory_mib > self.max_memory_mib {
            return Err(LoadError::Limits(format!(
                "its manifest asks for {} MiB of memory (limits.memory-mib), above this host's \
                 limit of {} MiB; an operator can raise `runtime.max_memory_mib`",
                needs.memory_mib, self.max_memory_mib
            )));
        }
        if needs.instances > self.max_instances {
            return Err(LoadError::Limits(format!(
                "its manifest asks for {} core instances (limits.instances), above this host's \
                 limit of {}; an operator can raise `runtime.max_instances`",
                needs.instances, self.max_instances
            )));
        }
        Ok(Grant {
            memory_mib: match needs.memory_mib {
                0 => self.default_memory_mib.min(self.max_memory_mib),
                n => n,
            },
            instances: match needs.instances {
                0 => self.max_instances,
                n => n,
            },
        })
    }

    /// Why reading the manifest under [`Caps::ceiling`] failed, in words that name the setting
    /// when a cap was the cause.
    pub fn explain_manifest_failure(&self, e: InvokeError) -> LoadError {
        match e {
            InvokeError::OutOfMemory(_) => LoadError::Limits(format!(
                "it needs more memory than this host's limit of {} MiB to start; an operator \
                 can raise `runtime.max_memory_mib`",
                self.max_memory_mib
            )),
            InvokeError::Instantiate(m) if m.contains("instance count") => {
                LoadError::Limits(format!(
                    "it has more core instances than this host's limit of {} ({m}); an operator \
                     can raise `runtime.max_instances`",
                    self.max_instances
                ))
            }
            InvokeError::ExportType(m) => LoadError::Contract(m.to_string()),
            other => LoadError::Manifest(other.to_string()),
        }
    }
}

impl Grant {
    /// Why the component failed under its own grant (after passing under the caps).
    pub fn explain_failure(&self, e: InvokeError) -> LoadError {
        match e {
            InvokeError::OutOfMemory(_) => LoadError::Limits(format!(
                "it does not start within the {} MiB its manifest asks for (limits.memory-mib); \
                 raise limits.memory-mib in the connector",
                self.memory_mib
            )),
            InvokeError::Instantiate(m) if m.contains("instance count") => {
                LoadError::Limits(format!(
                    "it has more core instances than the {} its manifest declares \
                     (limits.instances; {m}); fix limits.instances in the connector",
                    self.instances
                ))
            }
            InvokeError::ExportType(m) => LoadError::Contract(m.to_string()),
            other => LoadError::Manifest(other.to_string()),
        }
    }

    /// The wasmtime limiter for one store.
    pub fn store_limits(&self) -> StoreLimits {
        let n = self.instances as usize;
        StoreLimitsBuilder::new()
            .memory_size(self.memory_mib as usize * 1024 * 1024)
            .instances(n)
            .memories(n)
            .tables(n)
            .trap_on_grow_failure(true)
            .build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_follow_the_manifest_within_the_caps() {
        let caps = Caps::default();
        let zero = Limits::default();
        assert_eq!(
            caps.grant(&zero).unwrap(),
            Grant {
                memory_mib: 64,
                instances: 32
            },
            "0.1 manifests and zeros get the defaults"
        );
        let python = Limits {
            memory_mib: 32,
            instances: 14,
        };
        assert_eq!(
            caps.grant(&python).unwrap(),
            Grant {
                memory_mib: 32,
                instances: 14
            }
        );
        let greedy = Limits {
            memory_mib: 1024,
            instances: 3,
        };
        let e = caps.grant(&greedy).unwrap_err().to_string();
        assert!(
            e.contains("1024 MiB") && e.contains("runtime.max_memory_mib"),
            "{e}"
        );
        let many = Limits {
            memory_mib: 0,
            instances: 99,
        };
        let e = caps.grant(&many).unwrap_err().to_string();
        assert!(
            e.contains("99") && e.contains("runtime.max_instances"),
            "{e}"
        );
    }

    #[test]
    fn refusals_under_the_caps_name_the_setting() {
        let caps = Caps::default();
        let e = caps
            .explain_manifest_failure(InvokeError::Instantiate(
                "resource limit exceeded: instance count too high at 33".into(),
            ))
            .to_string();
        assert!(
            e.contains("runtime.max_instances") && e.contains("32"),
            "{e}"
        );
        let e = caps
            .explain_manifest_failure(InvokeError::OutOfMemory(256))
            .to_string();
        assert!(
            e.contains("runtime.max_memory_mib") && e.contains("256 MiB"),
            "{e}"
        );
    }
}
