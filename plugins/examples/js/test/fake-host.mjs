// A scripted host for native unit tests: the same methods as `host.js`'s `wasmHost`.
import { createHmac, timingSafeEqual } from 'node:crypto';

export const NOW = 1_700_000_000;

export class FakeHost {
  constructor({ settings = {}, secrets = {}, packages = [], state = {}, now = NOW } = {}) {
    Object.assign(this, { settings, secrets, packageList: packages, now });
    this.state = new Map(Object.entries(state));
    this.screenings = new Map();
    this.logs = [];
    this.sent = [];
    this.script = [];
  }

  respond(method, urlPrefix, status, body = '') {
    const bytes = new TextEncoder().encode(typeof body === 'string' ? body : JSON.stringify(body));
    this.script.push({ method, urlPrefix, answer: { status, headers: [], body: bytes } });
  }

  fail(method, urlPrefix, error) {
    this.script.push({ method, urlPrefix, error });
  }

  count(method, urlPrefix) {
    return this.sent.filter((r) => r.method === method && r.url.startsWith(urlPrefix)).length;
  }

  send(request) {
    this.sent.push(request);
    const i = this.script.findIndex((s) => s.method === request.method && request.url.startsWith(s.urlPrefix));
    if (i < 0) throw { payload: { tag: 'connection', val: `FakeHost: nothing scripted for ${request.method} ${request.url}` } };
    const [entry] = this.script.splice(i, 1);
    // componentize-js throws a ComponentError whose `payload` is the variant.
    if (entry.error) throw { payload: entry.error };
    return entry.answer;
  }

  stateGet(key) {
    return this.state.get(key);
  }
  stateSet(key, value) {
    this.state.set(key, value);
    this.screenings.delete(key);
  }
  stateSetForScreening(screening, key, value) {
    this.state.set(key, value);
    this.screenings.set(key, screening);
  }
  /** What the host does when it records the screening's order: its entries go. */
  recordOrder(screening) {
    for (const [key, s] of [...this.screenings]) {
      if (s === screening) {
        this.state.delete(key);
        this.screenings.delete(key);
      }
    }
  }
  stateDelete(key) {
    this.state.delete(key);
  }
  configGet(key) {
    return this.settings[key];
  }
  secret(key) {
    return this.secrets[key];
  }
  packages() {
    return this.packageList;
  }
  callbackUrl() {
    return 'https://switchyard.example/hooks/test/vendor';
  }
  log(level, message, fields) {
    this.logs.push({ level, message, fields });
  }
  logged(text) {
    return this.logs.some((l) => l.message.includes(text) || l.fields.flat().some((f) => f.includes(text)));
  }
  verifyHmacSha256(key, message, signature, encoding) {
    const expected = createHmac('sha256', key).update(message).digest();
    const given = Buffer.from(signature, encoding);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
  nowUnix() {
    return this.now;
  }
}

export function sign(secret, timestamp, body) {
  return `sha256=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`;
}
