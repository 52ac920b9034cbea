//! A process's CPU time and context switches by thread name, read from `/proc/<pid>/task`: what
//! the processing rows split per event (the store's writer, the workers and their blocking
//! threads, the HTTP threads, the guest runtime). A thread that ended between two readings takes
//! its share out of its name's figure (the process total keeps it).

use std::collections::BTreeMap;

/// CPU seconds and context switches (voluntary + involuntary) of one thread name.
#[derive(Clone, Copy, Default)]
pub struct Usage {
    pub cpu_secs: f64,
    pub switches: u64,
}

/// Each thread name of process `pid` (the kernel's 15-byte `comm`) with its threads' summed
/// usage; empty when the process is gone.
pub fn by_name(pid: u32) -> BTreeMap<String, Usage> {
    let mut names: BTreeMap<String, Usage> = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return names;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let (Ok(stat), Ok(status)) = (
            std::fs::read_to_string(dir.join("stat")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_string();
        let switches: u64 = status
            .lines()
            .filter(|l| l.contains("ctxt_switches:"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        let usage = names.entry(name).or_default();
        usage.cpu_secs += switchyard_tests::serve::stat_cpu_secs(&stat).unwrap_or(0.0);
        usage.switches += switches;
    }
    names
}

/// `after - before` per thread name, per one of `units`, as "name ms / switches" pieces,
/// largest CPU first; names with no CPU in between are left out.
pub fn per_unit(
    before: &BTreeMap<String, Usage>,
    after: &BTreeMap<String, Usage>,
    units: u64,
) -> String {
    split(before, after, units.max(1) as f64, 1000.0, "ms")
}

/// [`per_unit`] in µs of CPU (per acknowledged webhook).
pub fn per_unit_us(
    before: &BTreeMap<String, Usage>,
    after: &BTreeMap<String, Usage>,
    units: f64,
) -> String {
    split(before, after, units.max(1.0), 1e6, "µs")
}

/// The pieces of [`per_unit`], CPU seconds times `scale` named `unit`.
fn split(
    before: &BTreeMap<String, Usage>,
    after: &BTreeMap<String, Usage>,
    units: f64,
    scale: f64,
    unit: &str,
) -> String {
    let mut rows: Vec<(String, f64, f64)> = after
        .iter()
        .map(|(name, a)| {
            let b = before.get(name).copied().unwrap_or_default();
            let cpu = (a.cpu_secs - b.cpu_secs).max(0.0) * scale / units;
            let sw = a.switches.saturating_sub(b.switches) as f64 / units;
            (name.clone(), cpu, sw)
        })
        .filter(|(_, cpu, _)| *cpu > 0.0)
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.iter()
        .map(|(name, cpu, sw)| format!("{name} {cpu:.2} {unit} / {sw:.2} cs"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Context switches of all of `usage`'s threads.
pub fn switches(usage: &BTreeMap<String, Usage>) -> u64 {
    usage.values().map(|u| u.switches).sum()
}
