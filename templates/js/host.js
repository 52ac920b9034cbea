// The real host: each method calls the matching import of the `connector` world.
// `logic.js` only talks to a host object, so its tests pass a fake with the same methods.

import { send } from 'switchyard:connector/outbound-http@0.2.1';
import { get as stateGet, set as stateSet, setForScreening, delete as stateDelete } from 'switchyard:connector/state@0.2.1';
import { get as configGet, secret, packages, callbackUrl } from 'switchyard:connector/config@0.2.1';
import { log } from 'switchyard:connector/log@0.2.1';
import { verifyHmacSha256 } from 'switchyard:connector/crypto@0.2.1';

export const wasmHost = {
  // Throws a ComponentError whose `payload` is the `http-error` variant when there is no response.
  send: (request) => send(request),
  stateGet: (key) => stateGet(key),
  stateSet: (key, value) => stateSet(key, value),
  stateSetForScreening: (screening, key, value) => setForScreening(screening, key, value),
  stateDelete: (key) => stateDelete(key),
  configGet: (key) => configGet(key),
  // A secret setting. Never log it or put it in an error.
  secret: (key) => secret(key),
  packages: () => packages(),
  callbackUrl: () => callbackUrl(),
  log: (level, message, fields) => log(level, message, fields),
  verifyHmacSha256: (key, message, signature, encoding) => verifyHmacSha256(key, message, signature, encoding),
  // The WASI wall clock (componentize-js's `clocks` feature), in whole seconds.
  nowUnix: () => Math.floor(Date.now() / 1000),
};
