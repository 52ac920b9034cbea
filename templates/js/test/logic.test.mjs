// Unit tests of the connector's logic, natively: `node --test test/`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';

import * as logic from '../logic.js';
import { byEmailSince, byField, NEEDS_OPERATOR, noLookup } from '../lookup.js';
import { FakeHost, NOW } from './fake-host.mjs';

const BASE = 'https://api.example.com';
const KEY = 'lever:tok-1';
const host = (opts = {}) =>
  new FakeHost({
    settings: { 'api-base': BASE },
    secrets: { 'api-key': 'key_1', 'webhook-secret': 'whsec_1' },
    packages: [{ name: 'Basic', isDefault: true, params: [] }],
    ...opts,
  });
const request = (emails = ['ada@example.com']) => ({
  idempotencyKey: KEY,
  candidate: { name: 'Ada Lovelace', emails, phones: [] },
  opportunityId: 'opp-1',
  opportunityTags: [],
  postingTags: [],
});

test('invites once and records the order', () => {
  const h = host();
  h.respond('POST', `${BASE}/invitations`, 201, { id: 'inv-1', status: 'pending' });
  assert.equal(logic.startScreening(h, request()).orderRef, 'inv-1');
  assert.equal(JSON.parse(new TextDecoder().decode(h.sent[0].body)).reference, KEY);
  assert.equal(logic.startScreening(h, request()).orderRef, 'inv-1');
  assert.equal(h.sent.length, 1);
});

test('after a timeout the retry looks up first', () => {
  const h = host();
  h.fail('POST', `${BASE}/invitations`, { tag: 'timeout' });
  assert.throws(() => logic.startScreening(h, request()), (e) => e.tag === 'transient');
  h.respond('GET', `${BASE}/invitations?reference=lever%3Atok-1`, 200, { invitations: [{ id: 'inv-1', status: 'pending', reference: KEY }] });
  assert.equal(logic.startScreening(h, request()).orderRef, 'inv-1');
  assert.equal(h.count('POST', `${BASE}/invitations`), 1);
});

test('a vendor without a lookup: the retry waits for an operator instead of inviting twice', () => {
  const h = host();
  h.fail('POST', `${BASE}/invitations`, { tag: 'timeout' });
  assert.throws(() => logic.startScreening(h, request()), (e) => e.tag === 'transient');
  const original = logic.lookups.findEarlier;
  logic.lookups.findEarlier = () => {
    throw noLookup(logic.VENDOR);
  };
  try {
    assert.throws(() => logic.startScreening(h, request()), (e) => e.tag === 'rejected' && e.val.startsWith(NEEDS_OPERATOR));
  } finally {
    logic.lookups.findEarlier = original;
  }
  assert.equal(h.sent.filter((r) => r.method === 'POST').length, 1);
});

test('lookups by a stored field and by email and time window', () => {
  assert.equal(byField([{ id: 'a', tag: 'x' }, { id: 'b', tag: KEY }], KEY, (o) => o.tag).id, 'b');
  const orders = [
    { id: 'old', email: 'ada@example.com', created: NOW - 3600 },
    { id: 'new', email: 'ADA@example.com', created: NOW + 5 },
  ];
  const pick = (os) => byEmailSince(os, 'ada@example.com', NOW, (o) => o.email, (o) => o.created);
  assert.equal(pick(orders).id, 'new');
  assert.equal(pick(orders.slice(0, 1)), undefined);
  assert.throws(() => pick([...orders, { id: 'again', email: 'ada@example.com', created: NOW + 9 }]), (e) => e.val.startsWith(NEEDS_OPERATOR));
});

test('no email: an error status without a call', () => {
  const h = host();
  const started = logic.startScreening(h, request([' ']));
  assert.equal(started.status.label, '{{Name}} - ERROR (No Email)');
  assert.equal(h.sent.length, 0);
});

const signed = (body, secret = 'whsec_1', ts = NOW) => ({
  method: 'POST',
  path: '/',
  query: '',
  headers: [['x-timestamp', String(ts)], ['x-signature', createHmac('sha256', secret).update(`${ts}.${body}`).digest('hex')]],
  body: new TextEncoder().encode(body),
});

test('a signed callback is an update; a bad or stale one is refused', () => {
  const ok = logic.handleCallback(host(), signed('{"id":"inv-1","status":"complete"}'));
  assert.equal(ok.response.status, 200);
  assert.equal(ok.updates[0].status.label, '{{Name}} - Complete');
  for (const req of [signed('{"id":"inv-1","status":"complete"}', 'other'), signed('{}', 'whsec_1', NOW - 301)]) {
    const result = logic.handleCallback(host(), req);
    assert.equal(result.response.status, 401);
    assert.deepEqual(result.updates, []);
  }
});
