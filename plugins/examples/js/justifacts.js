// Justifacts background checks: a switchyard connector written in JavaScript.
//
// It speaks the Justifacts protocol exactly as the Rust connector `plugins/justifacts` does (see the
// module docs of `sim/src/justifacts.rs`): `POST {api-base}/v1/orders`, callbacks signed with
// `X-Justifacts-Timestamp` + `X-Justifacts-Signature: sha256=<hex HMAC-SHA256(secret,
// "<timestamp>.<body>")>`, the same labels, package tags and secret result note. Every function
// takes a `host` (see `host.js` for the component's, the tests' fake for theirs), so this module
// runs unchanged under `node --test` and inside the component.
//
// Values follow componentize-js's mapping of the WIT types: records are objects with camelCase
// keys, `list<u8>` is a Uint8Array, options are `undefined` when absent, enums are their kebab-case
// names, variants are `{ tag, val }`. An export's `result` error is a thrown `{ tag, val }` object
// (a thrown `Error` is a trap instead).

export const CONNECTOR_ID = 'justifacts-js';
export const VERSION = '0.1.0';

const DEFAULT_API_BASE = 'https://api.justifacts.com';
const TIMEOUT_MS = 15_000;
const TOLERANCE_SECS = 300;
const MAX_SIGNATURES = 8;
const TIMESTAMP_HEADER = 'x-justifacts-timestamp';
const SIGNATURE_HEADER = 'x-justifacts-signature';
const SCHEME = 'sha256=';
export const PACKAGE_CODE_PARAM = 'package-code';

// Measured (plugins/examples/README.md): 4 core instances; 9.1 MiB of linear memory after a call;
// 32 leaves room for large callback bodies and vendor answers.
const MEMORY_MIB = 32;
const INSTANCES = 4;

// The labels Justifacts' Lever integration shows, character for character: the two In-Progress
// labels really differ in the spacing around the colon.
export const LABELS = Object.freeze({
  IN_PROGRESS_CANDIDATE: '(Justifacts)In-Progress : Candidate',
  IN_PROGRESS_JUSTIFACTS: '(Justifacts)In-Progress: Justifacts',
  COMPLETE: '(Justifacts)Complete',
  ERROR_NO_EMAIL: '(Justifacts)ERROR (No Email)',
  ERROR_NO_PACKAGE_TAG: '(Justifacts)ERROR (No Package Tag)',
  ERROR_CONFLICTING_PACKAGE_TAGS: '(Justifacts)ERROR (Conflicting Package Tags)',
  ERROR_INVALID_PACKAGE_TAG: '(Justifacts)ERROR (Invalid Package Tag)',
  CANCELLED: '(Justifacts)Cancelled',
});
export const ALL_LABELS = [
  LABELS.IN_PROGRESS_CANDIDATE,
  LABELS.IN_PROGRESS_JUSTIFACTS,
  LABELS.COMPLETE,
  LABELS.ERROR_NO_EMAIL,
  LABELS.ERROR_NO_PACKAGE_TAG,
  LABELS.ERROR_CONFLICTING_PACKAGE_TAGS,
  LABELS.ERROR_INVALID_PACKAGE_TAG,
  LABELS.CANCELLED,
];

const configError = (message) => ({ tag: 'config', val: message });
const transient = (message) => ({ tag: 'transient', val: message });
const rejected = (message) => ({ tag: 'rejected', val: message });

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function manifest() {
  const field = (key, description, secret, required) => ({ key, description, secret, required });
  return {
    id: CONNECTOR_ID,
    version: VERSION,
    displayName: 'Justifacts background checks (JavaScript)',
    configFields: [
      field(
        'api-base',
        'Justifacts API base URL (default https://api.justifacts.com; point it at a sandbox or ' +
          'simulator for testing)',
        false,
        false,
      ),
      field('client-code', 'Your JWeb client account code', false, true),
      field('api-key', 'Justifacts API key (Bearer token)', true, true),
      field('webhook-secret', 'Secret Justifacts signs status callbacks with (HMAC-SHA256)', true, true),
    ],
    outboundHosts: ['api.justifacts.com'],
    statusLabels: [...ALL_LABELS],
    defaultTriggerStage: 'Background Check',
    verdictLabels: [],
    limits: { memoryMib: MEMORY_MIB, instances: INSTANCES },
  };
}

export function listPackages(host) {
  return host.packages();
}

// --- Package tags ---------------------------------------------------------------------------------

export const EXAMPLE_TAG = 'JUSTIFACTS BGC PKG: EmpCod[ID : 13558]';

const isCode = (s) => /^[0-9]+$/.test(s);
const trimStart = (s) => s.replace(/^\s+/, '');

// Parses one tag: `{ kind: 'none' }` (not a package tag), `{ kind: 'code', code }`, or
// `{ kind: 'invalid' }`. Grammar (case-insensitive words, `_` = any whitespace):
// `_ justifacts _ bgc _ pkg _ : _ empcod _ [ _ id _ : _ DIGITS _ ] _`. The shape is read
// tolerantly, the code strictly: ordering the wrong check is worse than asking for a fix.
export function parseTag(tag) {
  let rest = tag;
  const eat = (word) => {
    rest = trimStart(rest);
    if (rest.slice(0, word.length).toLowerCase() === word) {
      rest = rest.slice(word.length);
      return true;
    }
    return false;
  };
  for (const word of ['justifacts', 'bgc', 'pkg']) {
    if (!eat(word)) return { kind: 'none' };
  }
  // From here the tag is clearly meant as a package tag: any deviation is "invalid".
  const shapeOk = [':', 'empcod', '[', 'id', ':'].map(eat).every(Boolean);
  if (!shapeOk) return { kind: 'invalid' };
  const close = rest.indexOf(']');
  if (close < 0) return { kind: 'invalid' };
  const code = rest.slice(0, close).trim();
  const after = rest.slice(close + 1).trim();
  if (after !== '' || !isCode(code)) return { kind: 'invalid' };
  return { kind: 'code', code };
}

// Posting and opportunity tags together: two distinct codes conflict; otherwise any unreadable
// package tag is invalid; otherwise one code, or none.
export function resolveTags(tags) {
  const codes = [];
  const invalid = [];
  for (const tag of tags) {
    const parsed = parseTag(tag);
    if (parsed.kind === 'code' && !codes.includes(parsed.code)) codes.push(parsed.code);
    if (parsed.kind === 'invalid' && !invalid.includes(tag.trim())) invalid.push(tag.trim());
  }
  if (codes.length >= 2) return { kind: 'conflicting', codes };
  if (invalid.length > 0) return { kind: 'invalid', tags: invalid };
  if (codes.length === 1) return { kind: 'code', code: codes[0] };
  return { kind: 'no-tag' };
}

// An explicitly chosen package (Gem's send dialog) overrides tags: a bare code, a full tag, or the
// name of a configured package whose `package-code` parameter is a code. Blank → undefined.
export function resolveExplicit(value, packages) {
  const v = value.trim();
  if (v === '') return undefined;
  if (isCode(v)) return { kind: 'code', code: v };
  const parsed = parseTag(v);
  if (parsed.kind === 'code') return parsed;
  if (parsed.kind === 'invalid') return { kind: 'invalid', tags: [v] };
  const byName = packages.find((p) => p.name.trim().toLowerCase() === v.toLowerCase());
  const param = byName?.params.find(([k]) => k === PACKAGE_CODE_PARAM || k === 'code');
  const code = param ? param[1].trim() : undefined;
  return code !== undefined && isCode(code) ? { kind: 'code', code } : { kind: 'invalid', tags: [v] };
}

// What a note asks for once the data is fixed: the integration's own trigger stage, as the
// request names it (not always "Background Check").
export function retryStep(stage) {
  const name = typeof stage === 'string' ? stage.trim() : '';
  return name !== '' ? `move the candidate to ${name} again` : 'move the candidate to the trigger stage again';
}

export function problemNote(resolution, stage) {
  const retry = retryStep(stage);
  switch (resolution.kind) {
    case 'code':
      return undefined;
    case 'no-tag':
      return (
        `Justifacts: no package tag found on the posting. Add a posting tag such as ` +
        `\`${EXAMPLE_TAG}\`, then ${retry}.`
      );
    case 'conflicting':
      return (
        `Justifacts: the posting and opportunity tags name ${resolution.codes.length} different ` +
        `packages (${resolution.codes.join(', ')}). Keep exactly one tag such as \`${EXAMPLE_TAG}\`, ` +
        `remove the others, then ${retry}.`
      );
    default:
      return (
        `Justifacts: the package tag ${resolution.tags.map((t) => `\`${t}\``).join(', ')} could not ` +
        `be read. Package tags must look exactly like \`${EXAMPLE_TAG}\`, where the ID is the ` +
        `numeric package code from JWeb. Fix the tag, then ${retry}.`
      );
  }
}

const noEmailNote = (stage) =>
  'Justifacts: the candidate has no email address, so the background check invitation could not ' +
  `be sent. Add an email address to the candidate, then ${retryStep(stage)}.`;

export const firstEmail = (emails) => emails.map((e) => e.trim()).find((e) => e !== '' && e.includes('@'));

// Before any vendor call: `{ order: { packageCode, email } }` or `{ refuse: { label, note, reason } }`.
export function plan(request, packages) {
  const explicit = request.package !== undefined && request.package !== null
    ? resolveExplicit(request.package, packages)
    : undefined;
  const resolution = explicit ?? resolveTags([...request.postingTags, ...request.opportunityTags]);
  const packageProblem = problemNote(resolution, request.stage);
  const email = firstEmail(request.candidate.emails);
  if (email === undefined) {
    // One label at a time, but the note mentions the package problem too.
    const note = packageProblem ? `${noEmailNote(request.stage)} Also: ${packageProblem}` : noEmailNote(request.stage);
    return { refuse: { label: LABELS.ERROR_NO_EMAIL, note, reason: 'no email' } };
  }
  switch (resolution.kind) {
    case 'code':
      return { order: { packageCode: resolution.code, email } };
    case 'no-tag':
      return { refuse: { label: LABELS.ERROR_NO_PACKAGE_TAG, note: packageProblem, reason: 'no package tag' } };
    case 'conflicting':
      return {
        refuse: {
          label: LABELS.ERROR_CONFLICTING_PACKAGE_TAGS,
          note: packageProblem,
          reason: 'conflicting package tags',
        },
      };
    default:
      return { refuse: { label: LABELS.ERROR_INVALID_PACKAGE_TAG, note: packageProblem, reason: 'invalid package tag' } };
  }
}

// --- Statuses -------------------------------------------------------------------------------------

// Vendor status, read tolerantly (case, spaces, `_`, `-` ignored): 'initiated' | 'in-process' |
// 'complete' | 'cancelled', or undefined.
export function vendorStatus(s) {
  const norm = String(s).toLowerCase().replace(/[^a-z0-9]/g, '');
  if (['initiated', 'sent', 'invited'].includes(norm)) return 'initiated';
  if (['inprocess', 'inprogress', 'processing'].includes(norm)) return 'in-process';
  if (['complete', 'completed'].includes(norm)) return 'complete';
  if (['cancelled', 'canceled'].includes(norm)) return 'cancelled';
  return undefined;
}

const plain = (state, label) => ({ state, label });

function verdict(result) {
  if (typeof result !== 'string' || result.trim() === '') return undefined;
  const r = result.trim();
  const canonical = { clear: 'Clear', review: 'Review', adverse: 'Adverse' }[r.toLowerCase()];
  return canonical ?? [...r].slice(0, 64).join('');
}

// Only web links go into the result note (no `javascript:`, no whitespace).
function webUrl(url) {
  if (typeof url !== 'string') return undefined;
  const u = url.trim();
  const lower = u.toLowerCase();
  const web = lower.startsWith('https://') || lower.startsWith('http://');
  return web && !/\s/.test(u) ? u : undefined;
}

export function statusFor(status, result, resultUrl) {
  switch (status) {
    case 'initiated':
      return plain('pending', LABELS.IN_PROGRESS_CANDIDATE);
    case 'in-process':
      return plain('analyzing', LABELS.IN_PROGRESS_JUSTIFACTS);
    case 'cancelled':
      return plain('cancelled', LABELS.CANCELLED);
    default: {
      const v = verdict(result);
      const url = webUrl(resultUrl);
      let text = 'Justifacts background check complete.';
      if (v !== undefined) text += ` Result: ${v}.`;
      if (url !== undefined) text += ` Report: ${url}`;
      // The URL in a secret note only (seed 004), never as a report URL: that would be a public
      // Lever link.
      return { state: 'complete', label: LABELS.COMPLETE, verdict: v, note: { text, secret: true } };
    }
  }
}

// --- The Justifacts API ---------------------------------------------------------------------------

// application/x-www-form-urlencoded, as Rust's `form_urlencoded` (the Rust connectors) does it.
export function urlencode(value) {
  let out = '';
  for (const byte of encoder.encode(value)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9*\-._]/.test(c)) out += c;
    else if (byte === 0x20) out += '+';
    else out += '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

const header = (headers, name) => headers.find(([k]) => k.toLowerCase() === name)?.[1];

function errorMessage(body) {
  let text;
  try {
    const parsed = JSON.parse(decoder.decode(body));
    text = typeof parsed?.error === 'string' ? parsed.error : decoder.decode(body);
  } catch {
    text = decoder.decode(body);
  }
  text = [...text].slice(0, 200).join('');
  return text.trim() === '' ? 'no details' : text;
}

// A 4xx or 503 proves the vendor did nothing; any other failure may have placed the order.
const mayHaveTakenEffect = (status) => !((status >= 400 && status <= 499) || status === 503);

class Failed {
  constructor(error, mayHavePlaced) {
    this.error = error;
    this.mayHavePlaced = mayHavePlaced;
  }
}

function send(host, method, url, apiKey, body, extraHeaders = []) {
  const headers = [
    ['authorization', `Bearer ${apiKey}`],
    ['accept', 'application/json'],
    ...extraHeaders,
  ];
  try {
    return host.send({ method, url, headers, body: body ?? new Uint8Array(), timeoutMs: TIMEOUT_MS });
  } catch (e) {
    const failure = e?.payload ?? e;
    switch (failure?.tag) {
      case 'denied':
        throw new Failed(configError(`outbound request to Justifacts denied (${failure.val}): approve the api-base host`), false);
      case 'timeout':
        throw new Failed(transient('Justifacts timed out'), true);
      case 'connection':
        throw new Failed(transient(`cannot reach Justifacts: ${failure.val}`), true);
      case 'invalid':
        throw new Failed(configError(`invalid Justifacts request (check api-base): ${failure.val}`), false);
      default:
        throw e;
    }
  }
}

function failureFor(status, body) {
  if (status === 401 || status === 403) {
    return configError(`Justifacts refused the credentials (${status}): check api-key and client-code (${errorMessage(body)})`);
  }
  if ([408, 425, 429].includes(status) || (status >= 500 && status <= 599)) {
    return transient(`Justifacts unavailable (${status}): ${errorMessage(body)}`);
  }
  return rejected(`Justifacts rejected the order (${status}): ${errorMessage(body)}`);
}

function parseJson(body) {
  try {
    return JSON.parse(decoder.decode(body));
  } catch {
    return undefined;
  }
}

// The order an earlier attempt placed with our reference, or undefined.
function lookup(host, apiBase, apiKey, key) {
  const url = `${apiBase}/v1/orders?client_order_ref=${urlencode(key)}`;
  const response = send(host, 'GET', url, apiKey);
  const status = response.status;
  if (status === 401 || status === 403) throw new Failed(configError(`Justifacts rejected the credentials (${status})`), true);
  if ([408, 429].includes(status) || (status >= 500 && status <= 599)) throw new Failed(transient(`Justifacts answered ${status}`), true);
  if (status < 200 || status > 299) throw new Failed(rejected(`Justifacts answered ${status}`), true);
  const orders = parseJson(response.body)?.orders;
  if (!Array.isArray(orders)) {
    throw new Failed(rejected(`Justifacts answered ${status} with an unexpected body: no \`orders\` list`), true);
  }
  // An order carrying a reference must carry ours: never mistake someone else's for it.
  return orders.find(
    (o) =>
      typeof o?.order_id === 'string' &&
      o.order_id.trim() !== '' &&
      (o.client_order_ref === undefined || o.client_order_ref === null || o.client_order_ref === key),
  );
}

function placeOrder(host, apiBase, apiKey, key, body) {
  const response = send(host, 'POST', `${apiBase}/v1/orders`, apiKey, encoder.encode(JSON.stringify(body)), [
    ['content-type', 'application/json'],
    ['idempotency-key', key],
  ]);
  if (response.status >= 200 && response.status <= 299) {
    const orderId = parseJson(response.body)?.order_id;
    if (typeof orderId === 'string' && orderId.trim() !== '') return orderId.trim();
    // Most likely a proxy or a partial outage; the intent stays, so the retry looks up first.
    throw new Failed(transient(`Justifacts answered ${response.status} without an order id`), true);
  }
  throw new Failed(failureFor(response.status, response.body), mayHaveTakenEffect(response.status));
}

// --- The exports ----------------------------------------------------------------------------------

function requiredSecret(host, key) {
  const value = host.secret(key);
  if (value === undefined || value === null || value.trim() === '') throw configError(`missing secret \`${key}\``);
  return value.trim();
}

function configuredPackages(host) {
  return host.packages();
}

export function startScreening(host, request) {
  const key = request.idempotencyKey;
  const orderKey = `order:${key}`;
  const intentKey = `intent:${key}`;
  const recorded = host.stateGet(orderKey);
  if (recorded !== undefined && recorded !== null) {
    // Already ordered for this request: never invite twice.
    return { orderRef: recorded, status: plain('pending', LABELS.IN_PROGRESS_CANDIDATE) };
  }

  const clientCode = (host.configGet('client-code') ?? '').trim();
  if (clientCode === '') throw configError('missing setting `client-code`');
  const apiKey = requiredSecret(host, 'api-key');
  const apiBase = ((host.configGet('api-base') ?? '').trim() || DEFAULT_API_BASE).replace(/\/+$/, '');

  const decision = plan(request, configuredPackages(host));
  if (decision.refuse) {
    const { label, note, reason } = decision.refuse;
    host.log('warn', 'Justifacts screening not started', [
      ['opportunity-id', request.opportunityId],
      ['reason', reason],
    ]);
    return { orderRef: undefined, status: { state: 'error', label, note: { text: note, secret: false } } };
  }
  const { packageCode, email } = decision.order;

  try {
    if (host.stateGet(intentKey) !== undefined) {
      // An earlier attempt may have reached Justifacts: look the order up before ordering again.
      host.log('info', 'an earlier attempt may have reached the vendor; looking the order up', []);
      const found = lookup(host, apiBase, apiKey, key);
      if (found !== undefined) {
        const orderId = found.order_id.trim();
        host.stateSetForScreening(key, orderKey, orderId);
        host.stateDelete(intentKey);
        host.log('info', 'Justifacts order found by reference; not ordering again', [['order-id', orderId]]);
        const vs = vendorStatus(found.status ?? '');
        const status = vs ? statusFor(vs, found.result, found.result_url) : plain('pending', LABELS.IN_PROGRESS_CANDIDATE);
        return { orderRef: orderId, status };
      }
      host.log('info', 'no order found at the vendor; ordering', []);
    } else {
      // The intent, durable before the vendor call.
      host.stateSetForScreening(key, intentKey, String(host.nowUnix()));
    }
  } catch (e) {
    throw e instanceof Failed ? e.error : e;
  }

  const phone = request.candidate.phones.map((p) => p.trim()).find((p) => p !== '');
  const body = {
    client_code: clientCode,
    package_code: packageCode,
    reference: request.opportunityId,
    client_order_ref: key,
    callback_url: host.callbackUrl(),
    applicant: { name: request.candidate.name.trim(), email, phone: phone ?? null },
  };
  let orderId;
  try {
    orderId = placeOrder(host, apiBase, apiKey, key, body);
  } catch (e) {
    if (!(e instanceof Failed)) throw e;
    if (!e.mayHavePlaced) host.stateDelete(intentKey);
    throw e.error;
  }
  host.stateSetForScreening(key, orderKey, orderId);
  host.stateDelete(intentKey);
  host.log('info', 'Justifacts order placed', [
    ['opportunity-id', request.opportunityId],
    ['order-id', orderId],
    ['package-code', packageCode],
  ]);
  return { orderRef: orderId, status: plain('pending', LABELS.IN_PROGRESS_CANDIDATE) };
}

const json = (status, text) => ({
  status,
  headers: [['content-type', 'application/json']],
  body: encoder.encode(text),
});
const reply = (status, text, updates = []) => ({ response: json(status, text), updates });

// Checks the timestamp and `sha256=` signatures with the host's `crypto` import. Returns undefined
// when valid, else a reason for our own log.
function verifySignature(host, secret, timestamp, signature, body) {
  if (timestamp === undefined || signature === undefined) return 'missing signature or timestamp header';
  const t = timestamp.trim();
  if (!/^[0-9]{1,12}$/.test(t)) return 'malformed signature or timestamp header';
  if (Math.abs(host.nowUnix() - Number(t)) > TOLERANCE_SECS) return 'signature timestamp outside tolerance';
  const candidates = signature
    .split(',')
    .slice(0, MAX_SIGNATURES)
    .map((p) => p.trim())
    .filter((p) => p.startsWith(SCHEME))
    .map((p) => p.slice(SCHEME.length));
  if (candidates.length === 0 || candidates.some((c) => !/^([0-9a-fA-F]{2})+$/.test(c))) {
    return 'malformed signature or timestamp header';
  }
  const message = new Uint8Array([...encoder.encode(`${t}.`), ...body]);
  const key = encoder.encode(secret);
  return candidates.some((c) => host.verifyHmacSha256(key, message, c, 'hex')) ? undefined : 'signature mismatch';
}

export function handleCallback(host, request) {
  const secret = requiredSecret(host, 'webhook-secret');
  if (request.method.toUpperCase() !== 'POST') return reply(405, '{"error":"method not allowed"}');
  const problem = verifySignature(
    host,
    secret,
    header(request.headers, TIMESTAMP_HEADER),
    header(request.headers, SIGNATURE_HEADER),
    request.body,
  );
  if (problem !== undefined) {
    host.log('warn', `rejected Justifacts callback: ${problem}`, []);
    return reply(401, '{"error":"invalid signature"}');
  }
  const event = parseJson(request.body);
  if (event === null || typeof event !== 'object' || typeof event.order_id !== 'string' || typeof event.status !== 'string') {
    host.log('warn', 'malformed Justifacts callback', []);
    return reply(400, '{"error":"malformed body"}');
  }
  const orderRef = event.order_id.trim();
  if (orderRef === '') {
    host.log('warn', 'Justifacts callback without order_id', []);
    return reply(400, '{"error":"missing order_id"}');
  }
  const vs = vendorStatus(event.status);
  if (vs === undefined) {
    // Authentic but from a lifecycle we do not know: acknowledge, change nothing, tell the operator.
    const shown = [...event.status].slice(0, 64).join('');
    host.log('warn', `ignored Justifacts callback with unknown status ${JSON.stringify(shown)} for order ${orderRef}`, []);
    return reply(200, '{"ok":true,"ignored":true}');
  }
  const status = statusFor(vs, event.result, event.result_url);
  host.log('info', `Justifacts order ${orderRef} is now ${status.label}`, []);
  return reply(200, '{"ok":true}', [{ orderRef, status }]);
}
