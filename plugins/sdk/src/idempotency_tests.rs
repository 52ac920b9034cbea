//! Tests of `idempotency::start_once`: which vendor calls each state leads to, and what state it
//! leaves behind.

use std::cell::Cell;

use super::*;
use crate::testing::FakeHost;

const KEY: &str = "lever:tok-1";

/// Counts the calls of the lookup and invite closures it hands out.
#[derive(Default)]
struct Vendor {
    lookups: Cell<usize>,
    invites: Cell<usize>,
}

impl Vendor {
    fn lookup(
        &self,
        answer: Result<Option<&str>, ConnectorError>,
    ) -> impl FnOnce() -> Result<Option<String>, ConnectorError> + '_ {
        let answer = answer.map(|found| found.map(str::to_string));
        move || {
            self.lookups.set(self.lookups.get() + 1);
            answer
        }
    }

    fn invite(
        &self,
        answer: Result<&str, InviteError>,
    ) -> impl FnOnce() -> Result<String, InviteError> + '_ {
        let answer = answer.map(str::to_string);
        move || {
            self.invites.set(self.invites.get() + 1);
            answer
        }
    }

    fn calls(&self) -> (usize, usize) {
        (self.lookups.get(), self.invites.get())
    }
}

fn transient() -> ConnectorError {
    ConnectorError::Transient("no answer".into())
}

#[test]
fn a_first_attempt_records_the_intent_before_inviting_then_the_order() {
    let host = FakeHost::new();
    let v = Vendor::default();
    let invite = || {
        assert!(
            has_intent(&host, KEY),
            "the intent is recorded before the call"
        );
        v.invites.set(1);
        Ok("ord-1".to_string())
    };
    let outcome = start_once(&host, KEY, v.lookup(Ok(None)), invite).unwrap();
    assert_eq!(outcome, Outcome::Placed("ord-1".to_string()));
    assert_eq!(v.calls(), (0, 1), "no lookup without an intent");
    assert_eq!(host.state(&order_key(KEY)).as_deref(), Some("ord-1"));
    assert_eq!(host.state(&intent_key(KEY)), None);
}

#[test]
fn the_intent_and_the_order_belong_to_the_screening_and_go_when_the_host_records_it() {
    let host = FakeHost::new().with_state("cursor", "7");
    let v = Vendor::default();
    let invite = || {
        assert_eq!(host.screening_of(&intent_key(KEY)).as_deref(), Some(KEY));
        v.invites.set(1);
        Ok("ord-1".to_string())
    };
    start_once(&host, KEY, v.lookup(Ok(None)), invite).unwrap();
    assert_eq!(host.screening_of(&order_key(KEY)).as_deref(), Some(KEY));
    // A found order is screening-scoped too.
    let other = "lever:tok-2";
    host.set_state(&intent_key(other), "1699999000");
    start_once(&host, other, v.lookup(Ok(Some("ord-2"))), v.invite(Ok("x"))).unwrap();
    assert_eq!(host.screening_of(&order_key(other)).as_deref(), Some(other));
    // The host records both orders: nothing of either screening is left, plain entries stay.
    host.record_order(KEY);
    host.record_order(other);
    let left: Vec<String> = host.state_map().into_keys().collect();
    assert_eq!(
        left,
        ["cursor"],
        "no intent or order beside a recorded order"
    );
}

#[test]
fn a_recorded_order_calls_nobody() {
    let host = FakeHost::new().with_state(&order_key(KEY), "ord-1");
    let v = Vendor::default();
    let outcome = start_once(&host, KEY, v.lookup(Ok(None)), v.invite(Ok("ord-2"))).unwrap();
    assert_eq!(outcome, Outcome::Recorded("ord-1".into()));
    assert_eq!(outcome.order_ref(), "ord-1");
    assert_eq!(v.calls(), (0, 0));
}

#[test]
fn an_intent_and_an_order_at_the_vendor_means_no_second_invitation() {
    let host = FakeHost::new().with_state(&intent_key(KEY), "1699999000");
    let v = Vendor::default();
    let outcome = start_once(
        &host,
        KEY,
        v.lookup(Ok(Some("ord-1"))),
        v.invite(Ok("ord-2")),
    );
    assert_eq!(outcome, Ok(Outcome::Found("ord-1".to_string())));
    assert_eq!(v.calls(), (1, 0));
    assert_eq!(host.state(&order_key(KEY)).as_deref(), Some("ord-1"));
    assert_eq!(host.state(&intent_key(KEY)), None);
}

#[test]
fn an_intent_and_nothing_at_the_vendor_invites_once() {
    let host = FakeHost::new().with_state(&intent_key(KEY), "1699999000");
    let v = Vendor::default();
    let outcome = start_once(&host, KEY, v.lookup(Ok(None)), v.invite(Ok("ord-1")));
    assert_eq!(outcome, Ok(Outcome::Placed("ord-1".to_string())));
    assert_eq!(v.calls(), (1, 1));
    assert_eq!(host.state(&order_key(KEY)).as_deref(), Some("ord-1"));
}

#[test]
fn a_failed_lookup_invites_nobody_and_keeps_the_intent() {
    let host = FakeHost::new().with_state(&intent_key(KEY), "1699999000");
    let v = Vendor::default();
    let outcome = start_once(
        &host,
        KEY,
        v.lookup(Err(transient())),
        v.invite(Ok("ord-1")),
    );
    assert_eq!(outcome, Err(transient()));
    assert_eq!(v.calls(), (1, 0));
    assert!(has_intent(&host, KEY));
}

#[test]
fn a_lost_answer_keeps_the_intent_so_the_retry_looks_up_first() {
    let host = FakeHost::new();
    let v = Vendor::default();
    let lost = Err(InviteError::MaybePlaced(transient()));
    assert_eq!(
        start_once(&host, KEY, v.lookup(Ok(None)), v.invite(lost)),
        Err(transient())
    );
    assert!(has_intent(&host, KEY));
    assert_eq!(recorded(&host, KEY), None);
    let retry = start_once(
        &host,
        KEY,
        v.lookup(Ok(Some("ord-1"))),
        v.invite(Ok("ord-2")),
    );
    assert_eq!(retry, Ok(Outcome::Found("ord-1".to_string())));
    assert_eq!(v.calls(), (1, 1), "one invitation in all");
}

#[test]
fn a_certain_refusal_removes_this_attempts_intent_only() {
    let host = FakeHost::new();
    let v = Vendor::default();
    let refused = || Err(InviteError::NotPlaced(transient()));
    assert!(start_once(&host, KEY, v.lookup(Ok(None)), v.invite(refused())).is_err());
    assert!(
        !has_intent(&host, KEY),
        "nothing can exist: the retry invites directly"
    );
    assert!(start_once(&host, KEY, v.lookup(Ok(None)), v.invite(refused())).is_err());
    assert_eq!(v.calls(), (0, 2));

    // An intent an earlier attempt left stays: that attempt's fate is still unknown.
    let host = FakeHost::new().with_state(&intent_key(KEY), "1699999000");
    assert!(start_once(&host, KEY, v.lookup(Ok(None)), v.invite(refused())).is_err());
    assert!(has_intent(&host, KEY));
}

#[test]
fn an_empty_order_reference_is_never_recorded() {
    let host = FakeHost::new();
    let v = Vendor::default();
    let outcome = start_once(&host, KEY, v.lookup(Ok(None)), v.invite(Ok(" ")));
    assert!(matches!(outcome, Err(ConnectorError::Transient(_))));
    assert_eq!(recorded(&host, KEY), None);
    assert!(has_intent(&host, KEY));
}

#[test]
fn http_failures_are_classified_for_the_intent() {
    use crate::http::Request;
    let host = FakeHost::new();
    let url = "https://v.example/orders";
    host.fail("POST", url, crate::HttpError::Timeout);
    host.respond("POST", url, 503, "");
    host.respond("POST", url, 400, r#"{"error":"bad email"}"#);
    host.respond("POST", url, 502, "");
    let placed = |h: &FakeHost| {
        let f = Request::post(url).send_ok(h).unwrap_err();
        matches!(InviteError::from_http(&f, "V"), InviteError::MaybePlaced(_))
    };
    assert!(placed(&host), "timeout");
    assert!(!placed(&host), "503");
    assert!(!placed(&host), "400");
    assert!(placed(&host), "502");
    assert!(matches!(
        InviteError::for_status(201, transient()),
        InviteError::MaybePlaced(_)
    ));
}
