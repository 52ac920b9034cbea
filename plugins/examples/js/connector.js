// The component's entry point: componentize-js exports `screening` (the interface the world
// exports) from this module. Build (from the repository root; `scripts/toolchains.sh build` does it):
//
//   node .tools/node/node_modules/@bytecodealliance/componentize-js/src/cli.js \
//     plugins/examples/js/connector.js --wit wit --world-name connector \
//     --disable http fetch-event --out plugins/examples/target/justifacts_js.wasm
//
// Exports run synchronously (there is no event loop to wait on inside a call), which is why HMAC
// checks go through the contract's `crypto` import rather than `crypto.subtle`.

import * as justifacts from './justifacts.js';
import { wasmHost } from './host.js';

export const screening = {
  manifest: () => justifacts.manifest(),
  listPackages: () => justifacts.listPackages(wasmHost),
  startScreening: (request) => justifacts.startScreening(wasmHost, request),
  handleCallback: (request) => justifacts.handleCallback(wasmHost, request),
};
