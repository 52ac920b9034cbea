//! Step 3 of the idempotency pattern for vendors that cannot look an order up by our reference:
//! the `lookup` argument of [`crate::idempotency::start_once`].
//!
//! | what the vendor offers | helper |
//! | --- | --- |
//! | a field it stores with the order and lists or filters by (a tag, an external id, a note) | send the key there when inviting; list recent orders and pick with [`by_field`] |
//! | only a search or a list by email and creation time | list the candidate's orders since the intent ([`intent_since`]) and pick with [`by_email_since`]; two or more matches: an operator decides |
//! | nothing at all | [`none`]: the retry never re-invites blindly; the host holds the event for an operator |
//!
//! "An operator decides" is [`needs_operator`]: a `rejected` error whose message starts with
//! [`NEEDS_OPERATOR`]. The host puts the event in `waiting` for
//! `operator` with the reason, drops the screening's intent with the wait, and resumes it only on
//! an operator's retry, which then invites afresh. A host without the convention dead-letters it; an operator
//! retries it the same way. No contract change.

use crate::idempotency::intent_key;
use crate::{ConnectorError, Host};

/// The prefix of a `rejected` message that asks for an operator's decision (the host's
/// `wasm::types::NEEDS_OPERATOR`).
pub const NEEDS_OPERATOR: &str = "needs-operator: ";

/// How far before the intent's time an order still counts as this screening's in
/// [`by_email_since`]: clocks of the host and the vendor differ.
pub const CLOCK_SLACK_SECS: i64 = 300;

/// The error that makes the host hold the event for an operator, with `reason` (say what the
/// operator must check; never a secret or the candidate's details).
pub fn needs_operator(reason: impl Into<String>) -> ConnectorError {
    ConnectorError::Rejected(format!("{NEEDS_OPERATOR}{}", reason.into()))
}

/// Whether `error` asks for an operator's decision ([`needs_operator`]).
pub fn is_needs_operator(error: &ConnectorError) -> bool {
    matches!(error, ConnectorError::Rejected(m) if m.starts_with(NEEDS_OPERATOR))
}

/// The lookup of a vendor that cannot be searched at all: an earlier attempt's outcome is
/// unknown, so rather than invite again blindly, an operator decides.
pub fn none<T>(vendor: &str) -> impl FnOnce() -> Result<Option<T>, ConnectorError> {
    let reason = format!(
        "{vendor} may have placed the order of an earlier attempt (its answer was lost) and \
         cannot be searched; not inviting again without an operator"
    );
    move || Err(needs_operator(reason))
}

/// The order among `orders` (recent ones the vendor listed) whose `field` holds our reference
/// `key` (sent with the invitation in a field the vendor stores and lists or filters by).
pub fn by_field<T>(
    orders: impl IntoIterator<Item = T>,
    key: &str,
    field: impl Fn(&T) -> Option<&str>,
) -> Option<T> {
    orders
        .into_iter()
        .find(|order| field(order).is_some_and(|value| value.trim() == key))
}

/// When the intent of `key` was recorded (Unix seconds): the earliest an earlier attempt's order
/// can have been created.
pub fn intent_since(host: &impl Host, key: &str) -> Option<i64> {
    host.state_get(&intent_key(key))?.trim().parse().ok()
}

/// The order among `orders` for the candidate's `email` created since `since` (Unix seconds,
/// less [`CLOCK_SLACK_SECS`]): `Ok(None)` when there is none, so the retry invites. Two or more
/// are ambiguous (another screening of the same candidate): an operator decides. `created` gives
/// an order's creation time in Unix seconds (`None`: unknown, counted as a match).
pub fn by_email_since<T>(
    orders: impl IntoIterator<Item = T>,
    email: &str,
    since: i64,
    email_of: impl Fn(&T) -> Option<&str>,
    created: impl Fn(&T) -> Option<i64>,
) -> Result<Option<T>, ConnectorError> {
    let email = email.trim();
    let mut matches: Vec<T> = orders
        .into_iter()
        .filter(|o| email_of(o).is_some_and(|e| e.trim().eq_ignore_ascii_case(email)))
        .filter(|o| created(o).is_none_or(|at| at >= since - CLOCK_SLACK_SECS))
        .collect();
    match matches.len() {
        0 | 1 => Ok(matches.pop()),
        n => Err(needs_operator(format!(
            "the vendor has {n} orders for the candidate's email since the first attempt; \
             cannot tell which one this screening placed"
        ))),
    }
}

#[cfg(test)]
#[path = "lookup_tests.rs"]
mod tests;
