#!/usr/bin/env bash
# The whole test suite: connector unit tests (native), then host, simulator and end-to-end tests.
# One release build shared by the host, the simulators and the tests (target/); each connector is
# built once for wasm32-wasip2 (plugins/target/), each Python/JavaScript one once by
# scripts/toolchains.sh (plugins/examples/target/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
host_triple=$(rustc -vV | sed -n 's/^host: //p')
cargo test --release --manifest-path plugins/Cargo.toml --target "$host_triple"
# Components the admin tests upload and expect to be rejected (own workspace, kept out of the
# connectors directory).
cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml
# The crash test runs the switchyard binary as a separate process.
cargo build --release --workspace --bins
# Python and JavaScript connectors: the pinned toolchains (PyPI, npm) into .tools/, the examples
# and the three templates (instantiated by `switchyard connector new`) built once into
# plugins/examples/target/, their unit tests, and every scenario through `switchyard connector
# test` (which leaves their compiled code in plugins/examples/target/compiled/ for
# tests/polyglot.rs, which runs them in the host).
scripts/toolchains.sh test
cargo test --release --workspace
