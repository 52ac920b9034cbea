//! Replay protection beyond the timestamp window: the exact signed requests `(event id, t)`
//! accepted in the last [`KEEP_SECS`], so that a captured request replayed inside the window is
//! refused (409). A redelivery by Canditech has a fresh `t` and is processed again (the host
//! deduplicates the status it produces), so a delivery whose first processing failed is never lost.

use serde::{Deserialize, Serialize};

/// How long an accepted `(id, t)` is remembered. Beyond the 300-second tolerance window a replay
/// fails the time check anyway.
pub const KEEP_SECS: u64 = 600;

/// At most this many pairs are kept (the oldest go first).
pub const MAX_KEPT: usize = 200;

/// The state key holding the list.
pub const STATE_KEY: &str = "seen-callbacks";

#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Seen(Vec<(String, u64)>);

/// The list after accepting `(id, t)` at `now`, as the text to store; `None` when this exact
/// request was accepted before (a replay).
pub fn accept(stored: Option<&str>, id: &str, t: u64, now: u64) -> Option<String> {
    // An unreadable list (a newer connector's format) is treated as empty rather than failing
    // every callback; the timestamp window still bounds replays.
    let mut seen: Seen = stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if seen.0.iter().any(|(i, ts)| i == id && *ts == t) {
        return None;
    }
    seen.0
        .retain(|(_, ts)| now.saturating_sub(*ts) <= KEEP_SECS);
    seen.0.push((id.to_string(), t));
    if seen.0.len() > MAX_KEPT {
        let excess = seen.0.len() - MAX_KEPT;
        seen.0.drain(..excess);
    }
    Some(serde_json::to_string(&seen).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_signed_request_is_accepted_once_a_redelivery_again() {
        let s1 = accept(None, "evt_1", 1000, 1000).unwrap();
        assert_eq!(accept(Some(&s1), "evt_1", 1000, 1001), None, "replay");
        let s2 = accept(Some(&s1), "evt_1", 1060, 1060).expect("redelivery with a fresh t");
        assert_eq!(accept(Some(&s2), "evt_1", 1060, 1061), None);
    }

    #[test]
    fn old_pairs_are_pruned_and_the_list_is_bounded() {
        let mut s = accept(None, "old", 0, 0).unwrap();
        s = accept(Some(&s), "new", KEEP_SECS + 1, KEEP_SECS + 1).unwrap();
        assert!(!s.contains("old"));
        for i in 0..(MAX_KEPT + 50) {
            s = accept(Some(&s), &format!("e{i}"), 5000, 5000).unwrap();
        }
        let seen: Seen = serde_json::from_str(&s).unwrap();
        assert_eq!(seen.0.len(), MAX_KEPT);
        assert_eq!(seen.0.last().unwrap().0, format!("e{}", MAX_KEPT + 49));
        assert!(accept(Some("not json"), "x", 1, 1).is_some());
    }
}
