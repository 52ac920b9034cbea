"""Step 3 of the idempotency pattern when the vendor cannot look an order up by our reference.

An earlier attempt left an intent: its invitation may have reached the vendor. Find that order
before inviting again, in the first way the vendor allows:

- `by_field`: the vendor stores a field we set (a tag, an external id) and lists or filters by it:
  send the idempotency key there when inviting, list recent orders, pick the one carrying it;
- `by_email_since`: the vendor lists orders by email and creation time: pick the candidate's order
  created since the intent; two or more are ambiguous, so an operator decides;
- no way at all: `raise needs_operator(...)`. The host puts the event in `waiting` for `operator`
  with the reason (and drops the intent), and only an operator's retry resumes it, which then
  invites. Never invite again blindly.
"""

from componentize_py_types import Err
from wit_world.imports import types

# The prefix by which the host recognizes "an operator decides" (a `rejected` error).
NEEDS_OPERATOR = "needs-operator: "
# Host and vendor clocks differ: an order this much older than the intent still counts.
CLOCK_SLACK_SECS = 300


def needs_operator(reason):
    """The error that holds the event for an operator, with `reason` (no secrets, no candidate data)."""
    return Err(types.ConnectorError_Rejected(NEEDS_OPERATOR + reason))


def no_lookup(vendor):
    """The lookup of a vendor that cannot be searched at all."""
    return needs_operator(
        "%s may have placed the order of an earlier attempt (its answer was lost) and cannot be "
        "searched; not inviting again without an operator" % vendor
    )


def by_field(orders, key, field):
    """The first of `orders` whose `field(order)` holds our reference `key`, else None."""
    for order in orders:
        value = field(order)
        if isinstance(value, str) and value.strip() == key:
            return order
    return None


def intent_since(host, key):
    """When the intent of `key` was recorded (Unix seconds), or None."""
    value = host.state_get("intent:" + key)
    return int(value) if value is not None and value.strip().isdigit() else None


def by_email_since(orders, email, since, email_of, created_of):
    """The candidate's order created since `since` (Unix seconds), None if there is none.

    Raises `needs_operator` when two or more match. `created_of(order)` may return None (unknown:
    counted as a match)."""
    email = email.strip().lower()
    matches = [
        o for o in orders
        if isinstance(email_of(o), str) and email_of(o).strip().lower() == email
        and (created_of(o) is None or created_of(o) >= since - CLOCK_SLACK_SECS)
    ]
    if len(matches) > 1:
        raise needs_operator(
            "the vendor has %d orders for the candidate's email since the first attempt; "
            "cannot tell which one this screening placed" % len(matches)
        )
    return matches[0] if matches else None
