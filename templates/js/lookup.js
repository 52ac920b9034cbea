// Step 3 of the idempotency pattern when the vendor cannot look an order up by our reference.
//
// An earlier attempt left an intent: its invitation may have reached the vendor. Find that order
// before inviting again, in the first way the vendor allows:
// - `byField`: the vendor stores a field we set (a tag, an external id) and lists or filters by
//   it: send the idempotency key there when inviting, list recent orders, pick the one carrying it;
// - `byEmailSince`: the vendor lists orders by email and creation time: pick the candidate's order
//   created since the intent; two or more are ambiguous, so an operator decides;
// - no way at all: `throw noLookup(VENDOR)`. The host puts the event in `waiting` for `operator`
//   with the reason (and drops the intent); only an operator's retry resumes it, which then
//   invites. Never invite again blindly.

// The prefix by which the host recognizes "an operator decides" (a `rejected` error).
export const NEEDS_OPERATOR = 'needs-operator: ';
// Host and vendor clocks differ: an order this much older than the intent still counts.
export const CLOCK_SLACK_SECS = 300;

// The error to throw to hold the event for an operator (no secrets, no candidate data).
export const needsOperator = (reason) => ({ tag: 'rejected', val: NEEDS_OPERATOR + reason });

// The error of a vendor that cannot be searched at all.
export const noLookup = (vendor) =>
  needsOperator(`${vendor} may have placed the order of an earlier attempt (its answer was lost) and cannot be searched; not inviting again without an operator`);

// The first of `orders` whose `field(order)` holds our reference `key`, else undefined.
export const byField = (orders, key, field) => orders.find((o) => typeof field(o) === 'string' && field(o).trim() === key);

// When the intent of `key` was recorded (Unix seconds), or undefined.
export function intentSince(host, key) {
  const value = host.stateGet(`intent:${key}`);
  return value !== undefined && /^[0-9]+$/.test(value.trim()) ? Number(value) : undefined;
}

// The candidate's order created since `since` (Unix seconds), undefined if none; throws
// `needsOperator` when two or more match. `createdOf` may return undefined (counted as a match).
export function byEmailSince(orders, email, since, emailOf, createdOf) {
  const wanted = email.trim().toLowerCase();
  const matches = orders.filter((o) => {
    const e = emailOf(o);
    const at = createdOf(o);
    return typeof e === 'string' && e.trim().toLowerCase() === wanted && (at === undefined || at >= since - CLOCK_SLACK_SECS);
  });
  if (matches.length > 1) {
    throw needsOperator(`the vendor has ${matches.length} orders for the candidate's email since the first attempt; cannot tell which one this screening placed`);
  }
  return matches[0];
}
