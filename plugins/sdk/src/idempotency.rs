//! At most one vendor order per idempotency key, even when the vendor ignores idempotency keys
//! and the host crashed or timed out between the vendor call and its answer.
//!
//! The pattern (see the crate documentation for why), as [`start_once`] runs it:
//!
//! Both entries are screening-scoped (`state.set-for-screening`, contract 0.2.1): the host drops
//! them in the transaction that records the screening's order, and never calls `start-screening`
//! for that key again, so they never outlive the screening and no `intent:` is left beside a
//! recorded order.
//!
//! | state before the call | what happens |
//! | --- | --- |
//! | `order:<key>` (placed, the host has not recorded it yet) | [`Outcome::Recorded`]: no vendor call at all |
//! | nothing | record `intent:<key>`, invite; on an answer record `order:<key>` and remove the intent ([`Outcome::Placed`]) |
//! | `intent:<key>` only | look the order up at the vendor by our reference: found → record it ([`Outcome::Found`]), no invitation; none → invite as above |
//!
//! When the invitation fails, an [`InviteError::NotPlaced`] (the vendor certainly created
//! nothing: it refused, or the request never left) removes the intent *this* attempt recorded,
//! so the next attempt invites directly; an [`InviteError::MaybePlaced`] (timeout, lost
//! connection, a 5xx after the work may have been done, an unreadable success) keeps it, so the
//! next attempt looks up first. An intent an earlier attempt left is never removed by a failure:
//! that attempt's fate is still unknown.
//!
//! For the lookup to work, send our reference — the idempotency key — with the invitation in a
//! field the vendor stores and can search by (Certn `reference`, Justifacts `client_order_ref`).

use crate::http::{status_may_have_acted, HttpFailure};
use crate::{ConnectorError, Host, Level};

/// Prefix of the state key that holds the order placed for an idempotency key.
pub const ORDER_PREFIX: &str = "order:";
/// Prefix of the state key that says an invitation for an idempotency key may be under way.
pub const INTENT_PREFIX: &str = "intent:";

/// `order:<key>`.
pub fn order_key(key: &str) -> String {
    format!("{ORDER_PREFIX}{key}")
}

/// `intent:<key>`.
pub fn intent_key(key: &str) -> String {
    format!("{INTENT_PREFIX}{key}")
}

/// The order already recorded for `key`, if any: a retry that finds one must not call the
/// vendor. Check it first, before reading configuration, so a later configuration change cannot
/// turn a retry of a finished request into an error.
pub fn recorded(host: &impl Host, key: &str) -> Option<String> {
    host.state_get(&order_key(key))
}

/// Whether an invitation for `key` may be under way or done without its order being recorded.
pub fn has_intent(host: &impl Host, key: &str) -> bool {
    host.state_get(&intent_key(key)).is_some()
}

/// Records `order_ref` as the order for `key` (until the host records it) and removes the
/// intent.
pub fn record(host: &impl Host, key: &str, order_ref: &str) {
    host.state_set_for_screening(key, &order_key(key), order_ref);
    host.state_delete(&intent_key(key));
}

/// Something that names a vendor order (an invitation, an application, ...).
pub trait OrderRef {
    /// The vendor's reference for the order (what `start-screening` returns as `order-ref`).
    fn order_ref(&self) -> &str;
}

impl OrderRef for String {
    fn order_ref(&self) -> &str {
        self
    }
}

/// What [`start_once`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    /// An order was already recorded for the key (its reference); nothing was called.
    Recorded(String),
    /// An earlier attempt's order, found at the vendor by our reference; not invited again.
    Found(T),
    /// Invited now; the vendor answered with this order.
    Placed(T),
}

impl<T: OrderRef> Outcome<T> {
    /// The order's reference, whichever way it was obtained.
    pub fn order_ref(&self) -> &str {
        match self {
            Outcome::Recorded(r) => r,
            Outcome::Found(o) | Outcome::Placed(o) => o.order_ref(),
        }
    }

    /// The vendor's description of the order, unless it was only recorded.
    pub fn order(&self) -> Option<&T> {
        match self {
            Outcome::Recorded(_) => None,
            Outcome::Found(o) | Outcome::Placed(o) => Some(o),
        }
    }
}

/// Why an invitation failed, and whether the vendor may have placed the order anyway.
#[derive(Debug, Clone, PartialEq)]
pub enum InviteError {
    /// The vendor certainly placed nothing (it refused the request, or the request never left).
    NotPlaced(ConnectorError),
    /// The vendor may have placed the order (no answer, lost connection, a 5xx after the work
    /// may have been done, a success we could not read).
    MaybePlaced(ConnectorError),
}

impl InviteError {
    /// Classifies a failed call with [`HttpFailure::may_have_acted`], with the error from
    /// [`HttpFailure::to_error`] naming `vendor`.
    pub fn from_http(failure: &HttpFailure, vendor: &str) -> Self {
        let error = failure.to_error(vendor);
        if failure.may_have_acted() {
            InviteError::MaybePlaced(error)
        } else {
            InviteError::NotPlaced(error)
        }
    }

    /// Classifies a vendor answer with HTTP `status` that the connector turned into `error`
    /// (see [`crate::http::status_may_have_acted`]).
    pub fn for_status(status: u16, error: ConnectorError) -> Self {
        if status_may_have_acted(status) {
            InviteError::MaybePlaced(error)
        } else {
            InviteError::NotPlaced(error)
        }
    }

    /// The error to return to the host.
    pub fn error(&self) -> &ConnectorError {
        match self {
            InviteError::NotPlaced(e) | InviteError::MaybePlaced(e) => e,
        }
    }

    /// The error to return to the host.
    pub fn into_error(self) -> ConnectorError {
        match self {
            InviteError::NotPlaced(e) | InviteError::MaybePlaced(e) => e,
        }
    }
}

/// Places the order for `key` at most once: returns the recorded order, or `lookup`'s find when
/// an earlier attempt left an intent, or else records an intent and calls `invite` (see the
/// module documentation for the whole table).
///
/// `lookup` asks the vendor for the order it holds under our reference (the key), `Ok(None)`
/// when there is none; its error is returned as is (keep it `transient` when the vendor is
/// unreachable: the host retries, and the intent stays). `invite` places the order, sending the
/// key as our reference. An order reference that is empty is refused as `transient` (the intent
/// stays, so the retry looks up).
pub fn start_once<T: OrderRef>(
    host: &impl Host,
    key: &str,
    lookup: impl FnOnce() -> Result<Option<T>, ConnectorError>,
    invite: impl FnOnce() -> Result<T, InviteError>,
) -> Result<Outcome<T>, ConnectorError> {
    if let Some(order_ref) = recorded(host, key) {
        return Ok(Outcome::Recorded(order_ref));
    }
    let earlier_intent = has_intent(host, key);
    if earlier_intent {
        host.log(
            Level::Info,
            "an earlier attempt may have placed the order; looking it up by our reference",
            &[("idempotency-key", key)],
        );
        if let Some(found) = lookup()? {
            let order_ref = checked(&found)?;
            record(host, key, order_ref);
            host.log(
                Level::Info,
                "found the earlier attempt's order; not inviting again",
                &[("order-ref", order_ref)],
            );
            return Ok(Outcome::Found(found));
        }
    } else {
        // Durable when the call returns: a crash from here on leaves the intent behind.
        host.state_set_for_screening(key, &intent_key(key), &host.now().to_string());
    }
    match invite() {
        Ok(placed) => {
            record(host, key, checked(&placed)?);
            Ok(Outcome::Placed(placed))
        }
        Err(InviteError::NotPlaced(e)) => {
            if !earlier_intent {
                host.state_delete(&intent_key(key));
            }
            Err(e)
        }
        Err(InviteError::MaybePlaced(e)) => Err(e),
    }
}

fn checked<T: OrderRef>(order: &T) -> Result<&str, ConnectorError> {
    let order_ref = order.order_ref();
    if order_ref.trim().is_empty() {
        return Err(ConnectorError::Transient(
            "the vendor named the order with an empty reference".into(),
        ));
    }
    Ok(order_ref)
}

#[cfg(test)]
#[path = "idempotency_tests.rs"]
mod tests;
