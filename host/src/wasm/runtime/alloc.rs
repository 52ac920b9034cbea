//! How connector instances get their memory: wasmtime's pooling allocator sized from
//! `[runtime.pool]`, or on-demand allocation when the pool is off or cannot be reserved.
//!
//! With the pool, every slot a call needs (linear memories, tables, the async stacks its fibers
//! run on) is reserved once when the engine is built and reused: instantiating maps nothing, a
//! memory is initialised copy-on-write from the module's image (`memory_init_cow`), and the slot
//! keeps the image mapped for the next instance of the same module. When a call ends, up to
//! `keep_resident_kib` of each memory is reset in place (only the touched pages, with the kernel's
//! `PAGEMAP_SCAN`) rather than returned to the OS, so the next call takes no page faults there.
//!
//! Sizing: `instances` component instances (one per running call, more than the guest slots);
//! core instances = `instances` × `runtime.max_instances` (every grant fits); each memory slot is
//! `runtime.max_memory_mib` large, the cap no grant exceeds. Per-store limits (the grant) stay
//! the enforcement point; the pool only bounds what all calls together can hold.
//!
//! Nothing of a guest survives its call: a slot is reset before reuse (zeroed or re-mapped from
//! the image), exactly as wasmtime resets it between any two instances.

use wasmtime::{Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::Caps;
use crate::config::limits::{PoolSettings, SandboxLimits};

/// Which allocator the engine uses, for the start-up log and the benchmark.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Allocation {
    /// The pooling allocator with these slots.
    Pooling(PoolPlan),
    /// Instances allocated on demand; why (the pool is off, or reserving it failed).
    OnDemand(String),
}

impl std::fmt::Display for Allocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Allocation::Pooling(p) => write!(
                f,
                "pooling allocator: {} component instances, {} core instances, {} memories of \
                 {} MiB, {} tables of {} elements, {} KiB kept resident per memory",
                p.instances,
                p.core_instances,
                p.memories,
                p.memory_mib,
                p.tables,
                p.table_elements,
                p.keep_resident_kib
            ),
            Allocation::OnDemand(why) => write!(f, "on-demand allocation ({why})"),
        }
    }
}

/// The pool's slots, derived from `[runtime.pool]`, the guest slots and the caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolPlan {
    pub instances: u32,
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
    pub table_elements: u32,
    /// Largest linear memory of a slot: `runtime.max_memory_mib`.
    pub memory_mib: u32,
    pub keep_resident_kib: u32,
}

impl PoolPlan {
    /// The plan for these settings.
    pub fn new(pool: &PoolSettings, limits: &SandboxLimits, caps: Caps) -> PoolPlan {
        let instances = pool.instances_for(limits).max(1);
        let or_twice = |n: u32| match n {
            0 => instances.saturating_mul(2),
            n => n,
        };
        PoolPlan {
            instances,
            core_instances: instances.saturating_mul(caps.max_instances.max(1)),
            memories: or_twice(pool.memories),
            tables: or_twice(pool.tables),
            table_elements: pool.table_elements.max(1),
            memory_mib: caps.max_memory_mib.max(1),
            keep_resident_kib: pool.keep_resident_kib,
        }
    }

    fn config(&self) -> PoolingAllocationConfig {
        let mib = |n: u32| n as usize * 1024 * 1024;
        let mut p = PoolingAllocationConfig::new();
        p.total_component_instances(self.instances)
            .total_core_instances(self.core_instances)
            .total_memories(self.memories)
            .total_tables(self.tables)
            // Every instantiation and every call runs on a fiber: one stack per live instance.
            .total_stacks(self.instances)
            .table_elements(self.table_elements as usize)
            .max_memory_size(mib(self.memory_mib))
            .linear_memory_keep_resident(self.keep_resident_kib as usize * 1024)
            .table_keep_resident(64 * 1024)
            .pagemap_scan(wasmtime::Enabled::Auto);
        p
    }
}

/// The engine for `base` (everything but the allocator set): pooled per `pool` when enabled and
/// reservable, otherwise on demand (with a warning when the pool was wanted).
pub fn engine(
    mut base: wasmtime::Config,
    pool: &PoolSettings,
    limits: &SandboxLimits,
    caps: Caps,
) -> anyhow::Result<(Engine, Allocation)> {
    base.memory_init_cow(true);
    if pool.enabled {
        let plan = PoolPlan::new(pool, limits, caps);
        let mut pooled = base.clone();
        pooled.allocation_strategy(InstanceAllocationStrategy::Pooling(plan.config()));
        match Engine::new(&pooled) {
            Ok(engine) => return Ok((engine, Allocation::Pooling(plan))),
            Err(e) => {
                let why = format!("the instance pool could not be reserved: {e:#}");
                tracing::warn!(
                    "{why}; allocating connector instances on demand (slower calls); lower \
                     runtime.pool.instances or runtime.pool.memories, or raise the address-space \
                     limit (ulimit -v)"
                );
                base.allocation_strategy(InstanceAllocationStrategy::OnDemand);
                let engine = Engine::new(&base).map_err(|e| anyhow::anyhow!("{e:#}"))?;
                return Ok((engine, Allocation::OnDemand(why)));
            }
        }
    }
    base.allocation_strategy(InstanceAllocationStrategy::OnDemand);
    let engine = Engine::new(&base).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    Ok((
        engine,
        Allocation::OnDemand("runtime.pool.enabled = false".into()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_holds_every_guest_slot_and_every_grant() {
        let limits = SandboxLimits::default();
        let plan = PoolPlan::new(&PoolSettings::default(), &limits, Caps::default());
        assert_eq!(plan.instances as usize, limits.max_concurrent_calls + 16);
        assert_eq!(plan.memories, 2 * plan.instances);
        assert_eq!(plan.memory_mib, Caps::default().max_memory_mib);
        assert_eq!(
            plan.core_instances,
            plan.instances * Caps::default().max_instances
        );
        let e = PoolSettings {
            instances: 16,
            ..PoolSettings::default()
        }
        .check(&limits)
        .unwrap_err();
        assert!(
            e.contains("runtime.pool.instances") && e.contains("16"),
            "{e}"
        );
    }

    #[test]
    fn an_unreservable_pool_falls_back_to_on_demand() {
        // More memory slots than a 47-bit address space holds (each reserves ~4 GiB).
        let pool = PoolSettings {
            memories: 1_000_000,
            ..PoolSettings::default()
        };
        let (_engine, allocation) = engine(
            wasmtime::Config::new(),
            &pool,
            &SandboxLimits::default(),
            Caps::default(),
        )
        .unwrap();
        assert!(
            matches!(&allocation, Allocation::OnDemand(why) if why.contains("could not be reserved")),
            "{allocation}"
        );
    }
}
