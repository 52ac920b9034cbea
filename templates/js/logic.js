// {{Name}}: a switchyard connector (contract switchyard:connector@0.2.1, world `connector`).
//
// The vendor API below is a placeholder to adapt to {{Name}}'s real one:
// - `POST {api-base}/invitations` with `Authorization: Bearer <api-key>`, `Idempotency-Key: <key>`
//   and `{"reference", "email", "name", "package", "callback_url"}` -> `201 {"id", "status"}`;
// - `GET {api-base}/invitations?reference=<key>` -> `{"invitations": [{"id", "status", ...}]}`;
// - callbacks: `POST` with `{"id", "status", "report_url"}`, `X-Timestamp: <unix seconds>` and
//   `X-Signature: <hex HMAC-SHA256(webhook-secret, "<timestamp>.<body>")>`.
//
// If {{Name}} cannot find an order by our reference, change `findEarlier` (see `lookup.js`: a
// field the vendor stores and lists by, a search by email and time window, or
// `throw noLookup(VENDOR)` so that the host holds the event for an operator instead of inviting
// twice).
//
// Every function takes a `host` (`host.js` in the component, `test/fake-host.mjs` in tests).
// WIT values as componentize-js maps them: records are camelCase objects, `list<u8>` is a
// Uint8Array, absent options are `undefined`, variants `{ tag, val }`. Throw `{ tag, val }` (a
// `connector-error`) to return an error; a thrown `Error` is a trap.

import { byField } from './lookup.js';

export const VENDOR = '{{Name}}';
const TIMEOUT_MS = 10_000;
const TOLERANCE_SECS = 300;
const LABELS = {
  pending: '{{Name}} - Pending',
  inProgress: '{{Name}} - In Progress',
  complete: '{{Name}} - Complete',
  cancelled: '{{Name}} - Cancelled',
  noEmail: '{{Name}} - ERROR (No Email)',
};
// Vendor status -> [state, label].
const STATUSES = {
  pending: ['pending', LABELS.pending],
  in_progress: ['analyzing', LABELS.inProgress],
  complete: ['complete', LABELS.complete],
  cancelled: ['cancelled', LABELS.cancelled],
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const configError = (message) => ({ tag: 'config', val: message });

// Called when the host loads the component; must not call any import.
export function manifest() {
  return {
    id: '{{name}}',
    version: '0.1.0',
    displayName: '{{Name}}',
    configFields: [
      { key: 'api-base', description: '{{Name}} API base URL, e.g. https://api.example.com', secret: false, required: true },
      { key: 'api-key', description: '{{Name}} API key', secret: true, required: true },
      { key: 'webhook-secret', description: 'Secret {{Name}} signs callbacks with (HMAC-SHA256)', secret: true, required: true },
    ],
    // The hosts this connector calls by default; the operator approves others per integration.
    outboundHosts: ['api.example.com'],
    statusLabels: Object.values(LABELS),
    defaultTriggerStage: undefined,
    verdictLabels: [],
    // componentize-js components have 4 core instances; 32 MiB covers the engine and a call.
    limits: { memoryMib: 32, instances: 4 },
  };
}

export function listPackages(host) {
  const packages = host.packages();
  if (packages.length === 0) throw configError('no packages are configured');
  return packages;
}

const status = (state, label, reportUrl) => ({ state, label, reportUrl });

function required(value, what) {
  if (value === undefined || value === null || value.trim() === '') throw configError(`missing ${what}`);
  return value.trim();
}

// application/x-www-form-urlencoded, byte for byte as Rust's `form_urlencoded`.
function urlencode(value) {
  return [...encoder.encode(value)]
    .map((b) => (/[A-Za-z0-9*\-._]/.test(String.fromCharCode(b)) ? String.fromCharCode(b) : b === 0x20 ? '+' : `%${b.toString(16).toUpperCase().padStart(2, '0')}`))
    .join('');
}

// A vendor call that failed: the error, and whether the vendor may still have acted on it.
class Failed {
  constructor(error, mayHavePlaced = true) {
    Object.assign(this, { error, mayHavePlaced });
  }
}

function call(host, method, url, apiKey, body, headers = []) {
  let response;
  try {
    response = host.send({
      method,
      url,
      headers: [['authorization', `Bearer ${apiKey}`], ['accept', 'application/json'], ...headers],
      body: body ?? new Uint8Array(),
      timeoutMs: TIMEOUT_MS,
    });
  } catch (e) {
    const tag = e?.payload?.tag;
    if (tag === 'denied' || tag === 'invalid') throw new Failed(configError(`cannot call ${VENDOR}: ${e.payload.val}`), false);
    throw new Failed({ tag: 'transient', val: `${VENDOR} did not answer` });
  }
  const code = response.status;
  if (code >= 200 && code <= 299) {
    try {
      return JSON.parse(decoder.decode(response.body));
    } catch {
      throw new Failed({ tag: 'transient', val: `${VENDOR} answered ${code} with a body that is not JSON` });
    }
  }
  // A 4xx or a 503 proves nothing happened; other failures may have.
  const untouched = (code >= 400 && code <= 499) || code === 503;
  if (code === 401 || code === 403) throw new Failed(configError(`${VENDOR} rejected the credentials (${code})`), !untouched);
  if (code === 408 || code === 429 || code >= 500) throw new Failed({ tag: 'transient', val: `${VENDOR} answered ${code}` }, !untouched);
  throw new Failed({ tag: 'rejected', val: `${VENDOR} answered ${code}` }, !untouched);
}

// The invitation an earlier attempt placed for `key`, or undefined (then the retry invites).
// Step 3 of the idempotency pattern (docs/connectors.md). This vendor lists invitations by our
// reference; see lookup.js for one that cannot (`byField`, `byEmailSince`, `throw noLookup(VENDOR)`).
function findEarlier(host, base, apiKey, key) {
  let found;
  try {
    found = call(host, 'GET', `${base}/invitations?reference=${urlencode(key)}`, apiKey);
  } catch (e) {
    throw e instanceof Failed ? e.error : e;
  }
  const listed = (Array.isArray(found?.invitations) ? found.invitations : []).filter((i) => typeof i?.id === 'string');
  // A vendor that ignores the filter would list others: keep only ours (or unlabelled ones).
  return byField(listed, key, (i) => i.reference ?? key);
}

// The lookup `startScreening` uses, replaceable in tests.
export const lookups = { findEarlier };

export function startScreening(host, request) {
  const email = request.candidate.emails.map((e) => e.trim()).find((e) => e !== '');
  if (email === undefined) return { orderRef: undefined, status: status('error', LABELS.noEmail) };

  // The contract's idempotency pattern (wit/connector.wit, `state.set-for-screening`; the host drops both entries when it records the order).
  const key = request.idempotencyKey;
  const orderKey = `order:${key}`;
  const intentKey = `intent:${key}`;
  const recorded = host.stateGet(orderKey);
  if (recorded !== undefined) return { orderRef: recorded, status: status('pending', LABELS.pending) };

  const base = required(host.configGet('api-base'), 'setting `api-base`').replace(/\/+$/, '');
  const apiKey = required(host.secret('api-key'), 'secret `api-key`');
  const packages = listPackages(host);
  const wanted = request.package?.trim().toLowerCase();
  const chosen = wanted === undefined ? packages.find((p) => p.isDefault) ?? packages[0] : packages.find((p) => p.name.toLowerCase() === wanted);
  if (chosen === undefined) throw { tag: 'rejected', val: `unknown package ${JSON.stringify(request.package)}` };

  if (host.stateGet(intentKey) !== undefined) {
    // An earlier attempt may have reached the vendor: find its order before inviting again.
    const invitation = lookups.findEarlier(host, base, apiKey, key);
    if (invitation !== undefined) {
      host.stateSetForScreening(key, orderKey, invitation.id);
      host.stateDelete(intentKey);
      const [state, label] = STATUSES[invitation.status] ?? STATUSES.pending;
      return { orderRef: invitation.id, status: status(state, label) };
    }
  } else {
    host.stateSetForScreening(key, intentKey, String(host.nowUnix()));
  }

  const body = encoder.encode(
    JSON.stringify({ reference: key, email, name: request.candidate.name.trim(), package: chosen.name, callback_url: host.callbackUrl() }),
  );
  let invitation;
  try {
    invitation = call(host, 'POST', `${base}/invitations`, apiKey, body, [['content-type', 'application/json'], ['idempotency-key', key]]);
  } catch (e) {
    if (!(e instanceof Failed)) throw e;
    if (!e.mayHavePlaced) host.stateDelete(intentKey);
    throw e.error;
  }
  if (typeof invitation?.id !== 'string' || invitation.id === '') throw { tag: 'transient', val: `${VENDOR} answered without an invitation id` };
  host.stateSetForScreening(key, orderKey, invitation.id);
  host.stateDelete(intentKey);
  host.log('info', 'invitation sent', [['order-ref', invitation.id], ['package', chosen.name]]);
  return { orderRef: invitation.id, status: status('pending', LABELS.pending) };
}

const reply = (code, text, updates = []) => ({
  response: { status: code, headers: [['content-type', 'application/json']], body: encoder.encode(text) },
  updates,
});

export function handleCallback(host, request) {
  if (request.method.toUpperCase() !== 'POST') return reply(405, '{"error":"method not allowed"}');
  const secret = required(host.secret('webhook-secret'), 'secret `webhook-secret`');
  const header = (name) => request.headers.find(([k]) => k.toLowerCase() === name)?.[1]?.trim() ?? '';
  const timestamp = header('x-timestamp');
  const fresh = /^[0-9]{1,12}$/.test(timestamp) && Math.abs(host.nowUnix() - Number(timestamp)) <= TOLERANCE_SECS;
  const message = new Uint8Array([...encoder.encode(`${timestamp}.`), ...request.body]);
  // The host's crypto import computes the HMAC and compares in constant time.
  if (!fresh || !host.verifyHmacSha256(encoder.encode(secret), message, header('x-signature'), 'hex')) {
    host.log('warn', 'rejected a callback with a bad or stale signature', []);
    return reply(401, '{"error":"invalid signature"}');
  }
  let event;
  try {
    event = JSON.parse(decoder.decode(request.body));
  } catch {
    return reply(400, '{"error":"malformed body"}');
  }
  if (typeof event?.id !== 'string' || typeof event.status !== 'string') return reply(400, '{"error":"malformed body"}');
  const mapped = STATUSES[event.status.trim().toLowerCase()];
  if (mapped === undefined) {
    // Authentic but unknown: acknowledge so the vendor stops retrying, change nothing.
    host.log('warn', 'ignored a callback with an unknown status', [['order-ref', event.id]]);
    return reply(200, '{"ok":true}');
  }
  const reportUrl = typeof event.report_url === 'string' ? event.report_url : undefined;
  return reply(200, '{"ok":true}', [{ orderRef: event.id, status: status(mapped[0], mapped[1], reportUrl) }]);
}
