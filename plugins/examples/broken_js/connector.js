// A deliberately broken JavaScript connector, for the host's tests (tests/polyglot.rs): its
// manifest is valid, but `startScreening` makes the mistake JavaScript authors make most, a
// thrown `Error` instead of a `connector-error` variant ({ tag, val }), which traps inside
// componentize-js's generated glue. The suite asserts that the recorded error says what was
// thrown, from which export, and what to throw instead. scripts/toolchains.sh also builds it
// without `--disable http` (broken_js_http.wasm), which the host refuses at load naming the flag.

export const screening = {
  manifest: () => ({
    id: 'broken-js',
    version: '0.1.0',
    displayName: 'Broken (JavaScript)',
    configFields: [],
    outboundHosts: [],
    statusLabels: ['BROKEN - Pending'],
    defaultTriggerStage: undefined,
    verdictLabels: [],
    limits: { memoryMib: 32, instances: 4 },
  }),
  listPackages: () => [],
  startScreening: () => {
    throw new Error('the vendor said no');
  },
  handleCallback: () => {
    throw new Error('not expecting callbacks');
  },
};
