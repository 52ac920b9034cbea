// The component's entry point: componentize-js exports `screening` (the interface the world
// exports) from this module. The logic is in `logic.js`, which runs under `node --test` too.
import * as logic from './logic.js';
import { wasmHost } from './host.js';

export const screening = {
  manifest: () => logic.manifest(),
  listPackages: () => logic.listPackages(wasmHost),
  startScreening: (request) => logic.startScreening(wasmHost, request),
  handleCallback: (request) => logic.handleCallback(wasmHost, request),
};
