// Native unit tests of the Justifacts connector's logic: `node --test plugins/examples/js/test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as jf from '../justifacts.js';
import { FakeHost, NOW, sign } from './fake-host.mjs';

const BASE = 'http://127.0.0.1:9200';
const ORDERS = `${BASE}/v1/orders`;
const LOOKUP = `${BASE}/v1/orders?client_order_ref=`;
const KEY = 'lever:tok-1';
const TAG = 'JUSTIFACTS BGC PKG: EmpCod[ID : 13558]';
const SECRET = 'jf_whsec';
const decode = (bytes) => new TextDecoder().decode(bytes);

const host = (opts = {}) =>
  new FakeHost({
    settings: { 'api-base': `${BASE}/`, 'client-code': 'JW-1' },
    secrets: { 'api-key': 'jf_key_1', 'webhook-secret': SECRET },
    packages: [{ name: 'Standard', isDefault: true, params: [['package-code', '20001']] }],
    ...opts,
  });

const request = (overrides = {}) => ({
  idempotencyKey: KEY,
  candidate: { name: 'Ada Lovelace', emails: ['ada@example.com'], phones: [] },
  opportunityId: 'opp-1',
  opportunityTags: [],
  postingId: 'post-1',
  postingTags: [TAG],
  stage: 'Background Check',
  package: undefined,
  ...overrides,
});

const errorOf = (fn) => {
  try {
    fn();
  } catch (e) {
    return e;
  }
  assert.fail('no error thrown');
};

test('labels are exact and distinct', () => {
  assert.equal(jf.LABELS.IN_PROGRESS_CANDIDATE, '(Justifacts)In-Progress : Candidate');
  assert.equal(jf.LABELS.IN_PROGRESS_JUSTIFACTS, '(Justifacts)In-Progress: Justifacts');
  assert.equal(new Set(jf.ALL_LABELS).size, 8);
  assert.deepEqual(jf.manifest().statusLabels, jf.ALL_LABELS);
  assert.equal(jf.manifest().id, 'justifacts-js');
});

test('package tags: tolerant shape, strict code', () => {
  assert.deepEqual(jf.parseTag(' justifacts  bgc pkg:empcod [ id:13558 ] '), { kind: 'code', code: '13558' });
  assert.deepEqual(jf.parseTag('JUSTIFACTS BGC PKG: EmpCod[ID : 13a58]'), { kind: 'invalid' });
  assert.deepEqual(jf.parseTag('JUSTIFACTS BGC PKG EmpCod[ID : 1]'), { kind: 'invalid' });
  assert.deepEqual(jf.parseTag('Engineering'), { kind: 'none' });
  assert.deepEqual(jf.resolveTags([TAG, TAG.toLowerCase()]), { kind: 'code', code: '13558' });
  assert.deepEqual(jf.resolveTags([TAG, 'JUSTIFACTS BGC PKG: EmpCod[ID : 2]']).kind, 'conflicting');
  assert.deepEqual(jf.resolveTags([TAG, 'JUSTIFACTS BGC PKG: oops']).kind, 'invalid');
  assert.deepEqual(jf.resolveExplicit('Standard', [{ name: 'standard', params: [['package-code', '20001']] }]), { kind: 'code', code: '20001' });
  assert.equal(jf.resolveExplicit('  ', []), undefined);
});

test('orders once with client_order_ref and records the order', () => {
  const h = host();
  h.respond('POST', ORDERS, 201, { order_id: 'JF-1', status: 'Initiated' });
  const started = jf.startScreening(h, request({ candidate: { name: ' Ada ', emails: ['', 'ada@example.com'], phones: [' ', '+1555'] } }));
  assert.equal(started.orderRef, 'JF-1');
  assert.equal(started.status.label, '(Justifacts)In-Progress : Candidate');
  assert.equal(h.sent.length, 1, 'no lookup on a first attempt');
  const body = JSON.parse(decode(h.sent[0].body));
  assert.deepEqual(body, {
    client_code: 'JW-1',
    package_code: '13558',
    reference: 'opp-1',
    client_order_ref: KEY,
    callback_url: 'https://switchyard.example/hooks/test/vendor',
    applicant: { name: 'Ada', email: 'ada@example.com', phone: '+1555' },
  });
  assert.deepEqual(h.sent[0].headers.find(([k]) => k === 'idempotency-key'), ['idempotency-key', KEY]);
  assert.deepEqual([...h.state], [[`order:${KEY}`, 'JF-1']]);
  assert.equal(jf.startScreening(h, request()).orderRef, 'JF-1');
  assert.equal(h.sent.length, 1, 'a retry after success sends nothing');
});

test('a timeout keeps the intent; the retry looks up and finds the order', () => {
  const h = host();
  h.fail('POST', ORDERS, { tag: 'timeout' });
  assert.deepEqual(errorOf(() => jf.startScreening(h, request())), { tag: 'transient', val: 'Justifacts timed out' });
  assert.ok(h.state.has(`intent:${KEY}`));
  h.respond('GET', LOOKUP, 200, { orders: [{ order_id: 'JF-other', client_order_ref: 'lever:x' }, { order_id: 'JF-1', status: 'Complete', client_order_ref: KEY, result: 'Clear', result_url: 'https://r/JF-1' }] });
  const started = jf.startScreening(h, request());
  assert.equal(started.orderRef, 'JF-1');
  assert.equal(started.status.label, '(Justifacts)Complete');
  assert.equal(started.status.note.secret, true);
  assert.equal(h.count('POST', ORDERS), 1, 'never ordered twice');
  assert.equal(h.sent[1].url, `${LOOKUP}lever%3Atok-1`);
  assert.deepEqual([...h.state], [[`order:${KEY}`, 'JF-1']]);
});

test('a failing lookup orders nothing; a refusal drops the intent', () => {
  const h = host({ state: { [`intent:${KEY}`]: '1' } });
  h.respond('GET', LOOKUP, 502);
  assert.equal(errorOf(() => jf.startScreening(h, request())).tag, 'transient');
  assert.equal(h.count('POST', ORDERS), 0);

  const h2 = host();
  h2.respond('POST', ORDERS, 400, { error: 'applicant email invalid' });
  assert.deepEqual(errorOf(() => jf.startScreening(h2, request())), {
    tag: 'rejected',
    val: 'Justifacts rejected the order (400): applicant email invalid',
  });
  assert.equal(h2.state.size, 0);
});

test('refusals before any call: no email, no tag; config errors', () => {
  const h = host();
  const noEmail = jf.startScreening(h, request({ candidate: { name: 'A', emails: ['nope'], phones: [] }, postingTags: [] }));
  assert.equal(noEmail.orderRef, undefined);
  assert.equal(noEmail.status.label, '(Justifacts)ERROR (No Email)');
  assert.match(noEmail.status.note.text, /Also: Justifacts: no package tag/);
  const noTag = jf.startScreening(h, request({ postingTags: ['Remote'] }));
  assert.equal(noTag.status.label, '(Justifacts)ERROR (No Package Tag)');
  assert.match(noTag.status.note.text, /then move the candidate to Background Check again\.$/);
  // The note names the integration's own trigger stage.
  const elsewhere = jf.startScreening(h, request({ postingTags: ['Remote'], stage: 'Verification' }));
  assert.match(elsewhere.status.note.text, /then move the candidate to Verification again\.$/);
  assert.equal(h.sent.length, 0);
  assert.deepEqual(errorOf(() => jf.startScreening(new FakeHost({ settings: { 'client-code': 'x' } }), request())), {
    tag: 'config',
    val: 'missing secret `api-key`',
  });
  const h401 = host();
  h401.respond('POST', ORDERS, 401, { error: 'bad key jf_key_1' });
  assert.equal(errorOf(() => jf.startScreening(h401, request())).tag, 'config');
  assert.ok(!h401.logged('jf_key_1'));
});

const callback = (body, headers) => ({
  method: 'POST',
  path: '/',
  query: '',
  headers,
  body: new TextEncoder().encode(body),
});
const signed = (body, ts = NOW, secret = SECRET) =>
  callback(body, [
    ['x-justifacts-timestamp', String(ts)],
    ['x-justifacts-signature', sign(secret, ts, body)],
  ]);

test('a signed Complete callback: verdict, and the result URL in a secret note only', () => {
  const body = JSON.stringify({ order_id: 'JF-1', status: 'COMPLETED', result: 'adverse', result_url: 'https://r/JF-1' });
  const result = jf.handleCallback(host(), signed(body, NOW - 100));
  assert.equal(result.response.status, 200);
  assert.equal(result.updates.length, 1);
  const { orderRef, status } = result.updates[0];
  assert.equal(orderRef, 'JF-1');
  assert.equal(status.label, '(Justifacts)Complete');
  assert.equal(status.verdict, 'Adverse');
  assert.equal(status.reportUrl, undefined);
  assert.deepEqual(status.note, { text: 'Justifacts background check complete. Result: Adverse. Report: https://r/JF-1', secret: true });
});

test('bad, stale or missing signatures are 401 with no updates', () => {
  const body = '{"order_id":"JF-1","status":"Complete"}';
  const h = host();
  for (const req of [signed(body, NOW - 301), signed(body, NOW, 'other'), callback(body, []), callback(body, [['x-justifacts-timestamp', String(NOW)], ['x-justifacts-signature', 'sha256=zz']])]) {
    const result = jf.handleCallback(h, req);
    assert.equal(result.response.status, 401);
    assert.deepEqual(result.updates, []);
  }
  assert.ok(!h.logged(SECRET));
});

test('malformed, unknown and non-POST callbacks', () => {
  assert.equal(jf.handleCallback(host(), signed('nope')).response.status, 400);
  assert.equal(jf.handleCallback(host(), signed('{"order_id":" ","status":"Complete"}')).response.status, 400);
  const unknown = jf.handleCallback(host(), signed('{"order_id":"JF-1","status":"Escalated"}'));
  assert.equal(unknown.response.status, 200);
  assert.deepEqual(unknown.updates, []);
  assert.equal(jf.handleCallback(host(), { ...signed('{}'), method: 'GET' }).response.status, 405);
  // Only web links go into the note.
  const js = jf.handleCallback(host(), signed('{"order_id":"JF-1","status":"Complete","result_url":"javascript:alert(1)"}'));
  assert.equal(js.updates[0].status.note.text, 'Justifacts background check complete.');
});

test('urlencode matches form_urlencoded', () => {
  assert.equal(jf.urlencode('lever:a b&c~*é'), 'lever%3Aa+b%26c%7E*%C3%A9');
});
