//! Bounds on what a connector can make the host hold, applied where the bytes arrive: response
//! bodies read in chunks up to a cap, log lines cut and rate-limited per call, state values and
//! totals, status updates and manifests checked by size. Limits are [`SandboxLimits`]; each time
//! one bites it is counted for the connector (`switchyard_sandbox_limits_total`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::config::limits::{bytes, SandboxLimits};
use crate::wasm::types::{Manifest, Status, StatusUpdate};

/// Cuts `text` to at most `max` bytes (on a character boundary), saying how much was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [{} bytes cut]", &text[..end], text.len() - end)
}

/// Per-call counters (one per invocation).
#[derive(Debug, Default)]
pub struct CallBudget {
    log_lines: AtomicU64,
    log_dropped: AtomicU64,
}

impl CallBudget {
    /// Counts a log line; false once the call has used its `limit` lines.
    pub fn take_log_line(&self, limit: u64) -> bool {
        let n = self.log_lines.fetch_add(1, Ordering::Relaxed);
        if n < limit {
            true
        } else {
            self.log_dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// Log lines dropped so far in this call.
    pub fn log_dropped(&self) -> u64 {
        self.log_dropped.load(Ordering::Relaxed)
    }
}

/// Outbound response bytes held at once, per integration.
#[derive(Default)]
pub struct InFlight {
    by_integration: Mutex<HashMap<String, Arc<AtomicUsize>>>,
}

impl InFlight {
    /// The counter of `integration`.
    pub fn of(&self, integration: &str) -> Arc<AtomicUsize> {
        self.by_integration
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(integration.to_string())
            .or_default()
            .clone()
    }
}

/// Bytes reserved against an integration's in-flight budget, released on drop.
pub struct Reservation {
    counter: Arc<AtomicUsize>,
    held: usize,
}

impl Reservation {
    pub fn new(counter: Arc<AtomicUsize>) -> Reservation {
        Reservation { counter, held: 0 }
    }

    /// Reserves `n` more bytes if the total stays within `budget`.
    pub fn grow(&mut self, n: usize, budget: usize) -> bool {
        let mut current = self.counter.load(Ordering::Relaxed);
        loop {
            if current + n > budget {
                return false;
            }
            match self.counter.compare_exchange_weak(
                current,
                current + n,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.held += n;
                    return true;
                }
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// Why a response body was not handed over.
#[derive(Debug)]
pub enum BodyError {
    /// Over a cap: the text names it.
    TooLarge(String),
    Read(reqwest::Error),
}

/// Reads `resp`'s body chunk by chunk, refusing it once it passes `limits`' per-call cap or the
/// integration's in-flight budget. Nothing beyond the cap is ever buffered.
pub async fn read_body(
    mut resp: reqwest::Response,
    limits: &SandboxLimits,
    reservation: &mut Reservation,
) -> Result<Vec<u8>, BodyError> {
    let cap = limits.outbound_response_bytes;
    let too_large = || {
        BodyError::TooLarge(format!(
            "response body exceeds the {} cap of one call (runtime.limits.outbound_response_bytes)",
            bytes(cap)
        ))
    };
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > cap {
            return Err(too_large());
        }
        if !reservation.grow(chunk.len(), limits.outbound_integration_bytes) {
            return Err(BodyError::TooLarge(format!(
                "response bodies in flight for this integration exceed {} (runtime.limits.outbound_integration_bytes)",
                bytes(limits.outbound_integration_bytes)
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Checks one status's sizes.
pub fn check_status(status: &Status, limits: &SandboxLimits) -> Result<(), String> {
    let field = limits.status_field_bytes;
    let long = |name: &str, v: &str, max: usize| {
        (v.len() > max)
            .then(|| format!("status {name} of {} bytes exceeds {}", v.len(), bytes(max)))
    };
    let problems = [
        long("label", &status.label, field),
        status
            .report_url
            .as_deref()
            .and_then(|u| long("report-url", u, field)),
        status
            .verdict
            .as_deref()
            .and_then(|v| long("verdict", v, field)),
        status
            .note
            .as_ref()
            .and_then(|n| long("note", &n.text, limits.note_bytes)),
    ];
    match problems.into_iter().flatten().next() {
        Some(p) => Err(format!(
            "{p} (runtime.limits.status_field_bytes / note_bytes)"
        )),
        None => Ok(()),
    }
}

/// Checks a callback's updates: their number and each one's sizes.
pub fn check_updates(updates: &[StatusUpdate], limits: &SandboxLimits) -> Result<(), String> {
    if updates.len() > limits.callback_updates {
        return Err(format!(
            "the callback returned {} status updates; at most {} are accepted (runtime.limits.callback_updates)",
            updates.len(),
            limits.callback_updates
        ));
    }
    for u in updates {
        if u.order_ref.len() > limits.status_field_bytes {
            return Err(format!(
                "an order reference of {} bytes exceeds {} (runtime.limits.status_field_bytes)",
                u.order_ref.len(),
                bytes(limits.status_field_bytes)
            ));
        }
        check_status(&u.status, limits)?;
    }
    Ok(())
}

/// Checks a manifest's sizes at validate time: every string and every list.
pub fn check_manifest(m: &Manifest, limits: &SandboxLimits) -> Result<(), String> {
    let max = limits.manifest_string_bytes;
    let items = limits.manifest_list_items;
    let mut strings: Vec<(&str, &str)> = vec![
        ("id", &m.id),
        ("version", &m.version),
        ("display-name", &m.display_name),
    ];
    if let Some(s) = &m.default_trigger_stage {
        strings.push(("default-trigger-stage", s));
    }
    let lists: [(&str, usize); 4] = [
        ("config-fields", m.config_fields.len()),
        ("outbound-hosts", m.outbound_hosts.len()),
        ("status-labels", m.status_labels.len()),
        ("verdict-labels", m.verdict_labels.len()),
    ];
    if let Some((name, n)) = lists.iter().find(|(_, n)| *n > items) {
        return Err(format!(
            "manifest {name} has {n} entries; at most {items} are accepted (runtime.limits.manifest_list_items)"
        ));
    }
    strings.extend(
        m.outbound_hosts
            .iter()
            .map(|h| ("outbound-hosts", h.as_str())),
    );
    strings.extend(
        m.status_labels
            .iter()
            .map(|l| ("status-labels", l.as_str())),
    );
    for f in &m.config_fields {
        strings.push(("config-fields.key", &f.key));
        strings.push(("config-fields.description", &f.description));
    }
    if m.id.is_empty() {
        return Err("manifest id is empty".into());
    }
    match strings.iter().find(|(_, s)| s.len() > max) {
        Some((name, s)) => Err(format!(
            "manifest {name} of {} bytes exceeds {} (runtime.limits.manifest_string_bytes)",
            s.len(),
            bytes(max)
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_cuts_on_a_character_boundary_and_says_so() {
        assert_eq!(clip("short", 10), "short");
        let cut = clip("ééééé", 3);
        assert!(cut.starts_with('é') && cut.contains("bytes cut"), "{cut}");
    }

    #[test]
    fn the_log_budget_counts_what_it_drops() {
        let b = CallBudget::default();
        assert!((0..3).all(|_| b.take_log_line(3)));
        assert!(!b.take_log_line(3));
        assert!(!b.take_log_line(3));
        assert_eq!(b.log_dropped(), 2);
    }

    #[test]
    fn reservations_share_one_budget_and_release_on_drop() {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut a = Reservation::new(counter.clone());
        let mut b = Reservation::new(counter.clone());
        assert!(a.grow(6, 10));
        assert!(!b.grow(5, 10));
        assert!(b.grow(4, 10));
        drop(a);
        assert_eq!(counter.load(Ordering::Relaxed), 4);
        assert!(b.grow(6, 10));
    }

    fn manifest() -> Manifest {
        Manifest {
            id: "x".into(),
            version: "1.0.0".into(),
            display_name: "X".into(),
            config_fields: Vec::new(),
            outbound_hosts: Vec::new(),
            status_labels: vec!["X - Pending".into()],
            default_trigger_stage: None,
            verdict_labels: Vec::new(),
            limits: Default::default(),
        }
    }

    #[test]
    fn oversized_manifests_and_updates_are_refused_with_the_setting() {
        let limits = SandboxLimits::default();
        assert!(check_manifest(&manifest(), &limits).is_ok());
        let mut m = manifest();
        m.display_name = "n".repeat(20 << 20);
        let e = check_manifest(&m, &limits).unwrap_err();
        assert!(
            e.contains("display-name") && e.contains("manifest_string_bytes"),
            "{e}"
        );
        let mut m = manifest();
        m.status_labels = vec!["l".into(); 300_000];
        let e = check_manifest(&m, &limits).unwrap_err();
        assert!(
            e.contains("300000") && e.contains("manifest_list_items"),
            "{e}"
        );

        let update = |label: &str| StatusUpdate {
            order_ref: "o".into(),
            status: Status {
                state: "pending".into(),
                label: label.into(),
                report_url: None,
                score: None,
                verdict: None,
                note: None,
            },
        };
        let many = vec![update("X - Pending"); 101];
        let e = check_updates(&many, &limits).unwrap_err();
        assert!(e.contains("101") && e.contains("callback_updates"), "{e}");
        assert!(check_updates(&many[..100], &limits).is_ok());
        assert!(check_updates(&[update(&"l".repeat(5000))], &limits).is_err());
    }
}
