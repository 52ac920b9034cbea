//! Tests of the lookups: what each finds, and that a vendor without one never gets a blind
//! second invitation.

use std::cell::Cell;

use super::*;
use crate::idempotency::{intent_key, start_once, InviteError, Outcome};
use crate::testing::FakeHost;

const KEY: &str = "lever:tok-1";

#[test]
fn without_a_lookup_a_lost_answer_waits_for_an_operator_who_then_invites_once() {
    let host = FakeHost::new().with_now(1_700_000_000);
    let invites = Cell::new(0);
    let lost = || {
        invites.set(invites.get() + 1);
        Err(InviteError::MaybePlaced(ConnectorError::Transient(
            "timeout".into(),
        )))
    };
    assert!(start_once(&host, KEY, none::<String>("Acme"), lost).is_err());
    assert!(host.state(&intent_key(KEY)).is_some(), "the intent stays");

    // The retry: the fate of the first invitation is unknown and Acme cannot be searched.
    let blind = || -> Result<String, InviteError> { panic!("invited again blindly") };
    let error = start_once(&host, KEY, none::<String>("Acme"), blind).unwrap_err();
    assert!(is_needs_operator(&error), "{error:?}");
    let ConnectorError::Rejected(message) = &error else {
        panic!("{error:?}")
    };
    assert!(
        message.starts_with("needs-operator: Acme may have placed"),
        "{message}"
    );

    // The host drops the screening's intent with the wait; the operator's retry invites once.
    host.state_delete(&intent_key(KEY));
    let placed = start_once(&host, KEY, none::<String>("Acme"), || {
        invites.set(invites.get() + 1);
        Ok("ord-1".to_string())
    })
    .unwrap();
    assert_eq!(placed, Outcome::Placed("ord-1".to_string()));
    assert_eq!(invites.get(), 2, "the lost one and the operator's");
}

#[test]
fn a_stored_field_finds_the_order_that_carries_our_reference() {
    let listed = vec![
        ("ord-1", Some("lever:tok-0")),
        ("ord-2", Some(" lever:tok-1 ")),
        ("ord-3", None),
    ];
    let found = by_field(listed.clone(), KEY, |o| o.1);
    assert_eq!(found.map(|o| o.0), Some("ord-2"));
    assert_eq!(by_field(listed, "lever:tok-9", |o| o.1), None);
}

#[test]
fn an_email_and_a_window_find_one_order_and_refuse_to_guess_between_two() {
    let host = FakeHost::new().with_state(&intent_key(KEY), "1700000000");
    let since = intent_since(&host, KEY).expect("the intent's time");
    assert_eq!(since, 1_700_000_000);
    // (id, email, created)
    let orders = [
        ("old", "ada@example.com", 1_600_000_000),
        ("new", "ADA@example.com", 1_700_000_010),
        ("other", "grace@example.com", 1_700_000_020),
    ];
    let pick = |orders: &[(&'static str, &'static str, i64)]| {
        by_email_since(
            orders.to_vec(),
            "ada@example.com",
            since,
            |o| Some(o.1),
            |o| Some(o.2),
        )
        .map(|found| found.map(|o| o.0))
    };
    assert_eq!(
        pick(&orders).unwrap(),
        Some("new"),
        "case-insensitive, within the window"
    );
    assert_eq!(
        pick(&orders[..1]).unwrap(),
        None,
        "before the window: not this screening's"
    );
    let mut twice = orders.to_vec();
    twice.push(("again", "ada@example.com", 1_700_000_030));
    let error = pick(&twice).unwrap_err();
    assert!(is_needs_operator(&error), "{error:?}");
}
