#!/usr/bin/env node
// A prototype of `switchyard connector test <file.wasm> <scenario.json>`: runs a connector
// component offline against a scenario (templates/SCENARIO.md) with no host, no network and no
// vendor. The component is transpiled to JavaScript with jco and instantiated in Node with
// scripted implementations of the contract's imports; WASI comes from jco's preview2-shim, with
// the wall clock pinned to the scenario's `now` and no preopened directories.
//
//   node plugins/examples/harness/run.mjs <file.wasm> <scenario.json>
//
// It exists so the Python, JavaScript and Rust examples and templates can be exercised for real
// before the host (Rust, wasmtime) learns contract 0.2.0; the Rust harness implements the same
// format. Exit status: 0 every step passed, 1 a step failed, 2 unusable input.
// Needs the toolchain of scripts/toolchains.sh (`.tools/node`).

import { createHmac, timingSafeEqual, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const NM = join(ROOT, '.tools/node/node_modules/@bytecodealliance');

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: false });

class Usage extends Error {}

// --- Loading the component ------------------------------------------------------------------------

async function load(wasmPath) {
  const { transpile } = await import(pathToFileURL(join(NM, 'jco/dist/api.js')));
  const bytes = await readFile(wasmPath);
  const { files } = await transpile(bytes, {
    name: 'component',
    instantiation: 'async',
    noTypescript: true,
    quiet: true,
  });
  const dir = await mkdtemp(join(tmpdir(), 'switchyard-harness-'));
  for (const [name, content] of Object.entries(files)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), content);
  }
  const module = await import(pathToFileURL(join(dir, 'component.js')));
  const compiled = new Map();
  const getCoreModule = async (path) => {
    if (!compiled.has(path)) compiled.set(path, await WebAssembly.compile(await readFile(join(dir, path))));
    return compiled.get(path);
  };
  const shim = await import(pathToFileURL(join(NM, 'preview2-shim/dist/nodejs/index.js')));
  return {
    dir,
    // Core instances' exported memories, to report how much linear memory a call used.
    memories: [],
    instantiate(imports) {
      this.memories = [];
      const instantiateCore = (module, coreImports) => {
        const instance = new WebAssembly.Instance(module, coreImports);
        for (const value of Object.values(instance.exports)) {
          if (value instanceof WebAssembly.Memory) this.memories.push(value);
        }
        return instance;
      };
      return module.instantiate(getCoreModule, { ...wasiImports(shim), ...imports }, instantiateCore);
    },
    memoryBytes() {
      return [...new Set(this.memories)].reduce((sum, m) => sum + m.buffer.byteLength, 0);
    },
  };
}

// WASI as the host gives it: stdio, clocks, random, environment (empty), exit, and a filesystem and
// sockets that reach nothing (no preopens).
function wasiImports(shim) {
  const { cli, clocks, filesystem, io, random, sockets } = shim;
  cli._setEnv({});
  cli._setArgs([]);
  return {
    'wasi:cli/environment': cli.environment,
    'wasi:cli/exit': cli.exit,
    'wasi:cli/stderr': cli.stderr,
    'wasi:cli/stdin': cli.stdin,
    'wasi:cli/stdout': cli.stdout,
    'wasi:cli/terminal-input': cli.terminalInput,
    'wasi:cli/terminal-output': cli.terminalOutput,
    'wasi:cli/terminal-stderr': cli.terminalStderr,
    'wasi:cli/terminal-stdin': cli.terminalStdin,
    'wasi:cli/terminal-stdout': cli.terminalStdout,
    'wasi:clocks/monotonic-clock': clocks.monotonicClock,
    'wasi:clocks/wall-clock': { now: () => ({ seconds: BigInt(clock.now), nanoseconds: 0 }), resolution: () => ({ seconds: 0n, nanoseconds: 1 }) },
    'wasi:filesystem/preopens': { getDirectories: () => [] },
    'wasi:filesystem/types': filesystem.types,
    'wasi:io/error': io.error,
    'wasi:io/poll': io.poll,
    'wasi:io/streams': io.streams,
    'wasi:random/insecure': random.insecure,
    'wasi:random/insecure-seed': random.insecureSeed,
    'wasi:random/random': random.random,
    'wasi:sockets/instance-network': sockets.instanceNetwork,
    'wasi:sockets/ip-name-lookup': sockets.ipNameLookup,
    'wasi:sockets/network': sockets.network,
    'wasi:sockets/tcp': sockets.tcp,
    'wasi:sockets/tcp-create-socket': sockets.tcpCreateSocket,
    'wasi:sockets/udp': sockets.udp,
    'wasi:sockets/udp-create-socket': sockets.udpCreateSocket,
  };
}

const clock = { now: 0 };

// --- The contract's imports, scripted ---------------------------------------------------------------

class Trap extends Error {}

function contractImports(world) {
  // During `manifest` every import fails, as on the host.
  const guard = (name, fn) => (...args) => {
    if (world.inManifest) {
      world.failures.push(`manifest called import ${name}`);
      throw new Trap(`import ${name} called during manifest`);
    }
    return fn(...args);
  };
  const encodings = { hex: 'hex', base64: 'base64' };
  const decode = (text, encoding) => {
    const t = text.trim();
    if (encoding === 'hex' && !/^([0-9a-fA-F]{2})*$/.test(t)) return undefined;
    if (encoding === 'base64' && !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) return undefined;
    if (encoding === 'base64' && t.length % 4 !== 0) return undefined;
    return new Uint8Array(Buffer.from(t, encodings[encoding]));
  };
  const hmac = (key, message) => new Uint8Array(createHmac('sha256', key).update(message).digest());
  return {
    'switchyard:connector/types': {},
    'switchyard:connector/outbound-http': { send: guard('outbound-http.send', (request) => world.send(request)) },
    'switchyard:connector/config': {
      integrationId: guard('config.integration-id', () => world.config['integration-id'] ?? 'test'),
      get: guard('config.get', (key) => world.config.settings?.[key] ?? undefined),
      secret: guard('config.secret', (key) => world.config.secrets?.[key] ?? undefined),
      packages: guard('config.packages', () =>
        (world.config.packages ?? []).map((p) => ({
          name: p.name,
          isDefault: Boolean(p.default),
          params: Object.entries(p.params ?? {}),
        })),
      ),
      callbackUrl: guard('config.callback-url', () => world.config['callback-url'] ?? 'https://switchyard.example/hooks/test/vendor'),
    },
    'switchyard:connector/state': {
      get: guard('state.get', (key) => world.state.get(key)),
      set: guard('state.set', (key, value) => void world.state.set(key, value)),
      delete: guard('state.delete', (key) => void world.state.delete(key)),
    },
    'switchyard:connector/log': {
      log: guard('log.log', (level, message, fields) => void world.logs.push({ level, message, fields })),
    },
    'switchyard:connector/crypto': {
      sha256: guard('crypto.sha256', (data) => new Uint8Array(createHash('sha256').update(data).digest())),
      hmacSha256: guard('crypto.hmac-sha256', hmac),
      constantTimeEq: guard('crypto.constant-time-eq', (a, b) => a.length === b.length && timingSafeEqual(a, b)),
      verifyHmacSha256: guard('crypto.verify-hmac-sha256', (key, message, signature, encoding) => {
        const given = decode(signature, encoding);
        const expected = hmac(key, message);
        return given !== undefined && given.length === expected.length && timingSafeEqual(given, expected);
      }),
      encode: guard('crypto.encode', (data, encoding) => Buffer.from(data).toString(encodings[encoding])),
      decode: guard('crypto.decode', decode),
    },
  };
}

// --- Scenario values <-> component values -------------------------------------------------------------

function bodyBytes(spec, where) {
  if (spec['body-base64'] !== undefined) return new Uint8Array(Buffer.from(spec['body-base64'], 'base64'));
  const body = spec.body;
  if (body === undefined || body === null) return new Uint8Array();
  if (typeof body === 'string') return encoder.encode(body);
  if (typeof body === 'object') return encoder.encode(JSON.stringify(body));
  throw new Usage(`${where}: body must be a string or JSON`);
}

function headerPairs(headers) {
  return Object.entries(headers ?? {}).map(([k, v]) => [k.toLowerCase(), String(v)]);
}

function screeningRequest(r) {
  if (typeof r?.['idempotency-key'] !== 'string') throw new Usage('start-screening request needs an idempotency-key');
  const c = r.candidate ?? {};
  return {
    idempotencyKey: r['idempotency-key'],
    candidate: { name: c.name ?? '', emails: c.emails ?? [], phones: c.phones ?? [] },
    opportunityId: r['opportunity-id'] ?? '',
    opportunityTags: r['opportunity-tags'] ?? [],
    postingId: r['posting-id'] ?? undefined,
    postingTags: r['posting-tags'] ?? [],
    stage: r.stage ?? undefined,
    package: r.package ?? undefined,
  };
}

function callbackRequest(r, world, where) {
  const body = bodyBytes(r, where);
  const headers = headerPairs(r.headers);
  if (r.sign) headers.push(...signatureHeaders(r.sign, body, world, where));
  return { method: r.method ?? 'POST', path: r.path ?? '/', query: r.query ?? '', headers, body };
}

// `sign`: computes signature headers as the vendor would, at the step's clock.
function signatureHeaders(sign, body, world, where) {
  const secret = sign['secret-value'] ?? world.config.secrets?.[sign.secret];
  if (typeof secret !== 'string') throw new Usage(`${where}: sign.secret names no configured secret`);
  const timestamp = String(clock.now + (sign['timestamp-offset'] ?? 0));
  const template = sign.message ?? '{timestamp}.{body}';
  const [before, after] = splitOnce(template.replaceAll('{timestamp}', timestamp), '{body}');
  const message = after === undefined
    ? encoder.encode(before)
    : Buffer.concat([encoder.encode(before), body, encoder.encode(after)]);
  const mac = createHmac('sha256', secret).update(message).digest();
  return Object.entries(sign.headers ?? {}).map(([name, value]) => [
    name.toLowerCase(),
    value
      .replaceAll('{timestamp}', timestamp)
      .replaceAll('{hmac-hex}', mac.toString('hex'))
      .replaceAll('{hmac-base64}', mac.toString('base64')),
  ]);
}

function splitOnce(s, sep) {
  const i = s.indexOf(sep);
  return i < 0 ? [s] : [s.slice(0, i), s.slice(i + sep.length)];
}

const opt = (v) => (v === undefined ? null : v);

function statusOut(s) {
  return {
    state: s.state,
    label: s.label,
    'report-url': opt(s.reportUrl),
    score: opt(s.score),
    verdict: opt(s.verdict),
    note: s.note === undefined || s.note === null ? null : { text: s.note.text, secret: s.note.secret },
  };
}

function responseOut(r) {
  return {
    status: r.status,
    headers: Object.fromEntries(r.headers.map(([k, v]) => [k.toLowerCase(), v])),
    body: decoder.decode(r.body),
  };
}

function manifestOut(m) {
  return {
    id: m.id,
    version: m.version,
    'display-name': m.displayName,
    'config-fields': m.configFields.map((f) => ({ key: f.key, description: f.description, secret: f.secret, required: f.required })),
    'outbound-hosts': m.outboundHosts,
    'status-labels': m.statusLabels,
    'default-trigger-stage': opt(m.defaultTriggerStage),
    'verdict-labels': m.verdictLabels,
    limits: { 'memory-mib': m.limits.memoryMib, instances: m.limits.instances },
  };
}

// --- Matching ------------------------------------------------------------------------------------------

// Expected values are partial: objects list only what is checked; `<field>-contains` checks a
// substring (or each of a list of substrings) of `<field>`; `<field>-json` parses `<field>` as JSON
// and matches it; arrays match element by element and must have the same length.
function match(expected, actual, path, problems) {
  if (expected === null) {
    if (actual !== null && actual !== undefined) problems.push(`${path}: expected none, got ${show(actual)}`);
    return;
  }
  if (Array.isArray(expected)) {
    if (!Array.isArray(actual) || actual.length !== expected.length) {
      problems.push(`${path}: expected ${expected.length} item(s), got ${show(actual)}`);
      return;
    }
    expected.forEach((e, i) => match(e, actual[i], `${path}[${i}]`, problems));
    return;
  }
  if (typeof expected === 'object') {
    if (actual === null || typeof actual !== 'object') {
      problems.push(`${path}: expected an object, got ${show(actual)}`);
      return;
    }
    for (const [key, value] of Object.entries(expected)) {
      if (key.endsWith('-contains')) {
        const field = key.slice(0, -'-contains'.length);
        const text = actual[field];
        for (const part of [].concat(value)) {
          if (typeof text !== 'string' || !text.includes(part)) {
            problems.push(`${path}.${field}: expected to contain ${show(part)}, got ${show(text)}`);
          }
        }
      } else if (key.endsWith('-json')) {
        const field = key.slice(0, -'-json'.length);
        let parsed;
        try {
          parsed = JSON.parse(actual[field]);
        } catch {
          problems.push(`${path}.${field}: expected JSON, got ${show(actual[field])}`);
          continue;
        }
        match(value, parsed, `${path}.${field}`, problems);
      } else {
        match(value, actual[key], `${path}.${key}`, problems);
      }
    }
    return;
  }
  if (expected !== actual) problems.push(`${path}: expected ${show(expected)}, got ${show(actual)}`);
}

const show = (v) => (v === undefined ? 'nothing' : JSON.stringify(v)?.slice(0, 300));

// --- Running ---------------------------------------------------------------------------------------------

function makeWorld(scenario) {
  return {
    config: scenario.config ?? {},
    state: new Map(Object.entries(scenario.state ?? {})),
    logs: [],
    failures: [],
    exchanges: [],
    inManifest: false,
    send(request) {
      const where = `request ${this.sent + 1} (${request.method} ${request.url})`;
      this.sent += 1;
      const exchange = this.exchanges.shift();
      if (exchange === undefined) {
        this.failures.push(`${where}: not in the scenario`);
        throw { tag: 'connection', val: 'harness: no recorded exchange for this request' };
      }
      const actual = {
        method: request.method,
        url: request.url,
        headers: Object.fromEntries(request.headers.map(([k, v]) => [k.toLowerCase(), v])),
        body: decoder.decode(request.body),
        'timeout-ms': opt(request.timeoutMs),
      };
      const expected = { method: exchange.method, url: exchange.url };
      for (const key of Object.keys(exchange)) {
        if (key === 'headers' || key.startsWith('body')) expected[key] = exchange[key];
      }
      if (expected.headers) {
        expected.headers = Object.fromEntries(Object.entries(expected.headers).map(([k, v]) => [k.toLowerCase(), v]));
      }
      const problems = [];
      match(expected, actual, where, problems);
      this.failures.push(...problems);
      if (exchange.error !== undefined) {
        const e = exchange.error;
        throw typeof e === 'string' ? { tag: e } : { tag: Object.keys(e)[0], val: Object.values(e)[0] };
      }
      const response = exchange.response ?? {};
      return {
        status: response.status ?? 200,
        headers: headerPairs(response.headers ?? (typeof response.body === 'object' ? { 'content-type': 'application/json' } : {})),
        body: bodyBytes(response, where),
      };
    },
    sent: 0,
  };
}

function errorOut(e) {
  const payload = e?.payload;
  if (payload && typeof payload === 'object' && 'tag' in payload) return { kind: payload.tag, message: String(payload.val) };
  return undefined;
}

async function runStep(component, scenario, world, step, index, manifest) {
  const name = step.name ?? `${index + 1}: ${step.call}`;
  const where = `step ${index + 1} (${name})`;
  clock.now = step.now ?? scenario.now ?? Math.floor(Date.now() / 1000);
  world.logs = [];
  world.failures = [];
  world.exchanges = [...(step.http ?? [])];
  world.sent = 0;
  // `given-state`: what an earlier (crashed) attempt left behind; null removes a key.
  for (const [key, value] of Object.entries(step['given-state'] ?? {})) {
    if (value === null) world.state.delete(key);
    else world.state.set(key, String(value));
  }
  const instance = await component.instantiate(contractImports(world));
  const screening = instance.screening ?? instance['switchyard:connector/screening@0.2.0'];
  let outcome;
  try {
    switch (step.call) {
      case 'start-screening':
        outcome = { ok: (({ orderRef, status }) => ({ 'order-ref': opt(orderRef), status: statusOut(status) }))(screening.startScreening(screeningRequest(step.request))) };
        break;
      case 'handle-callback': {
        const r = screening.handleCallback(callbackRequest(step.request ?? {}, world, where));
        outcome = { ok: { response: responseOut(r.response), updates: r.updates.map((u) => ({ 'order-ref': u.orderRef, status: statusOut(u.status) })) } };
        break;
      }
      case 'list-packages':
        outcome = { ok: screening.listPackages().map((p) => ({ name: p.name, default: p.isDefault, params: Object.fromEntries(p.params) })) };
        break;
      case 'manifest':
        outcome = { ok: manifest };
        break;
      default:
        throw new Usage(`${where}: unknown call ${show(step.call)}`);
    }
  } catch (e) {
    if (e instanceof Usage) throw e;
    const error = errorOut(e);
    outcome = error ? { error } : { trap: String(e?.message ?? e) };
  }

  const problems = [...world.failures];
  const expect = step.expect ?? {};
  if (outcome.trap !== undefined) {
    if (expect.trap === undefined) problems.push(`trapped: ${outcome.trap}`);
  } else if (expect.trap !== undefined) {
    problems.push(`expected a trap, got ${show(outcome.ok ?? outcome.error)}`);
  }
  if (outcome.error !== undefined && expect.error === undefined && expect.trap === undefined) {
    problems.push(`returned error ${outcome.error.kind}: ${outcome.error.message}`);
  }
  if (outcome.ok !== undefined && expect.error !== undefined) problems.push(`expected error ${show(expect.error)}, got ok ${show(outcome.ok)}`);
  if (expect.ok !== undefined && outcome.ok !== undefined) match(expect.ok, outcome.ok, 'result', problems);
  if (expect.error !== undefined && outcome.error !== undefined) match(expect.error, outcome.error, 'error', problems);
  if (expect.state !== undefined) {
    for (const [key, value] of Object.entries(expect.state)) {
      const actual = world.state.get(key);
      if (value === true ? actual === undefined : value === null ? actual !== undefined : actual !== value) {
        problems.push(`state ${show(key)}: expected ${value === true ? 'a value' : show(value)}, got ${show(actual)}`);
      }
    }
  }
  if (expect.logs !== undefined) {
    const text = world.logs.map((l) => [l.message, ...l.fields.flat()].join(' ')).join('\n');
    for (const part of [].concat(expect.logs['contain'] ?? [])) {
      if (!text.includes(part)) problems.push(`logs: expected to contain ${show(part)}`);
    }
  }
  if (world.exchanges.length > 0) {
    problems.push(`${world.exchanges.length} recorded exchange(s) not requested, first ${world.exchanges[0].method} ${world.exchanges[0].url}`);
  }
  // Always checked: labels are the manifest's, and no secret leaks into what the host keeps or shows.
  const statuses = outcome.ok?.status ? [outcome.ok.status] : (outcome.ok?.updates ?? []).map((u) => u.status);
  for (const s of statuses) {
    if (!manifest['status-labels'].includes(s.label)) problems.push(`label ${show(s.label)} is not in the manifest's status-labels`);
  }
  const kept = JSON.stringify({
    logs: world.logs,
    error: outcome.error,
    response: outcome.ok?.response,
    updates: outcome.ok?.updates,
    status: outcome.ok?.status,
    state: [...world.state.entries()],
  });
  for (const [key, secret] of Object.entries(world.config.secrets ?? {})) {
    if (typeof secret === 'string' && secret.length >= 4 && kept.includes(secret)) {
      problems.push(`secret ${show(key)} appears in logs, errors, responses or state`);
    }
  }
  return { name, problems, memory: component.memoryBytes() };
}

// Unknown keys are an error (SCENARIO.md), so a typo cannot silently test nothing.
const KEYS = {
  // approved-hosts, limits, config.allowed-hosts/allow-loopback: the Rust harness's policy and
  // quotas; the prototype accepts and ignores them.
  scenario: ['description', 'now', 'config', 'state', 'manifest', 'approved-hosts', 'limits', 'steps'],
  config: ['integration-id', 'callback-url', 'settings', 'secrets', 'packages', 'allowed-hosts', 'allow-loopback'],
  package: ['name', 'default', 'params'],
  step: ['name', 'call', 'now', 'given-state', 'request', 'http', 'expect'],
  screening: ['idempotency-key', 'candidate', 'opportunity-id', 'opportunity-tags', 'posting-id', 'posting-tags', 'stage', 'package'],
  candidate: ['name', 'emails', 'phones'],
  callback: ['method', 'path', 'query', 'headers', 'body', 'body-base64', 'sign'],
  sign: ['secret', 'secret-value', 'timestamp-offset', 'message', 'headers'],
  exchange: ['method', 'url', 'headers', 'body', 'body-contains', 'body-json', 'response', 'error'],
  response: ['status', 'headers', 'body', 'body-base64'],
  expect: ['ok', 'error', 'trap', 'state', 'logs'],
};

function checkKeys(value, kind, where) {
  if (value === undefined) return;
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Usage(`${where}: expected an object`);
  for (const key of Object.keys(value)) {
    if (!KEYS[kind].includes(key)) throw new Usage(`${where}: unknown key ${JSON.stringify(key)}`);
  }
}

function validate(scenario) {
  checkKeys(scenario, 'scenario', 'scenario');
  checkKeys(scenario.config, 'config', 'config');
  (scenario.config?.packages ?? []).forEach((p, i) => checkKeys(p, 'package', `config.packages[${i}]`));
  (scenario.steps ?? []).forEach((step, i) => {
    const where = `steps[${i}]`;
    checkKeys(step, 'step', where);
    if (step.call === 'start-screening') {
      checkKeys(step.request, 'screening', `${where}.request`);
      checkKeys(step.request?.candidate, 'candidate', `${where}.request.candidate`);
    }
    if (step.call === 'handle-callback') {
      checkKeys(step.request, 'callback', `${where}.request`);
      checkKeys(step.request?.sign, 'sign', `${where}.request.sign`);
    }
    (step.http ?? []).forEach((x, j) => {
      checkKeys(x, 'exchange', `${where}.http[${j}]`);
      checkKeys(x.response, 'response', `${where}.http[${j}].response`);
    });
    checkKeys(step.expect, 'expect', `${where}.expect`);
  });
}

async function main() {
  const [wasmPath, scenarioPath] = process.argv.slice(2);
  if (!wasmPath || !scenarioPath) throw new Usage('usage: run.mjs <file.wasm> <scenario.json>');
  let scenario;
  try {
    scenario = JSON.parse(await readFile(scenarioPath, 'utf8'));
  } catch (e) {
    throw new Usage(`${scenarioPath}: ${e.message}`);
  }
  validate(scenario);
  const component = await load(wasmPath);
  try {
    const world = makeWorld(scenario);
    // The manifest, called first with every import failing, as the host does at load time.
    world.inManifest = true;
    clock.now = scenario.now ?? 0;
    const instance = await component.instantiate(contractImports(world));
    const manifest = manifestOut((instance.screening ?? instance['switchyard:connector/screening@0.2.0']).manifest());
    world.inManifest = false;
    const results = [];
    const manifestProblems = [...world.failures];
    if (scenario.manifest) match(scenario.manifest, manifest, 'manifest', manifestProblems);
    results.push({ name: 'manifest', problems: manifestProblems, memory: component.memoryBytes() });
    for (const [i, step] of (scenario.steps ?? []).entries()) {
      results.push(await runStep(component, scenario, world, step, i, manifest));
    }
    let failed = 0;
    for (const r of results) {
      if (r.problems.length === 0) {
        console.log(`ok   ${r.name}`);
      } else {
        failed += 1;
        console.log(`FAIL ${r.name}`);
        for (const p of r.problems) console.log(`       ${p}`);
      }
    }
    const peak = Math.max(...results.map((r) => r.memory ?? 0));
    console.log(`linear memory after a call, at most: ${(peak / 2 ** 20).toFixed(1)} MiB`);
    console.log(`${scenarioPath}: ${results.length - failed} passed, ${failed} failed`);
    return failed === 0 ? 0 : 1;
  } finally {
    await rm(component.dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e) => {
    console.error(e instanceof Usage ? e.message : e);
    process.exit(2);
  },
);
