#!/usr/bin/env bash
# The whole test suite: connector unit tests (native), then host, simulator and end-to-end tests.
# One release build shared by the host, the test kit, the simulators and the tests (target/): the
# `cargo build` below and the final `cargo test` resolve the same features (tests/Cargo.toml says
# how), so the second compiles only the test targets. Each connector is built once for
# wasm32-wasip2: the production ones into plugins/target/ (scripts/setup.sh), the test and
# benchmark ones into plugins/fixtures/target/; each Python/JavaScript one once by
# scripts/toolchains.sh (plugins/examples/target/, skipped when up to date).
# Each phase prints its wall and CPU time (its processes', children included) when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
# phase <name> <command...>: runs the command, then prints how long it took.
phase() {
  local name=$1 me=$BASHPID t0 c0
  shift
  t0=$(date +%s.%N)
  c0=$(awk '{print $16 + $17}' "/proc/$me/stat")
  "$@"
  awk -v n="$name" -v t0="$t0" -v t1="$(date +%s.%N)" -v c0="$c0" -v hz="$(getconf CLK_TCK)" \
    -v c1="$(awk '{print $16 + $17}' "/proc/$me/stat")" \
    'BEGIN { printf "test.sh: %-34s %7.1f s wall %7.1f s CPU\n", n, t1 - t0, (c1 - c0) / hz }' >&2
}
start=$(date +%s.%N)
phase "connectors (wasm)" scripts/setup.sh
# The console's browser tests (tests/console.rs) drive a headless Chromium through chromedriver:
# Debian's packages, installed once here when missing (never from inside a test).
browser() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  fi
}
phase "chromium" browser
# A throwaway PostgreSQL for the store's tests on that backend (they fail, never skip, without it):
# started once for the whole run, stopped and removed on exit.
pg_start() { eval "$(scripts/pg.sh start)"; }
phase "postgresql" pg_start
trap 'scripts/pg.sh stop "$SWITCHYARD_TEST_PG_DIR"' EXIT
host_triple=$(rustc -vV | sed -n 's/^host: //p')
phase "connectors' unit tests (native)" \
  cargo test --release --manifest-path plugins/Cargo.toml --target "$host_triple"
# Test and benchmark components (own workspace, kept out of the connectors directory): those the
# admin tests upload and expect to be rejected, the old-contract Certn, misbehave, hostile, twin.
phase "fixtures (wasm)" \
  cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml
phase "fixtures' unit tests (native)" \
  cargo test --release --manifest-path plugins/fixtures/Cargo.toml --target "$host_triple" \
  -p misbehave -p hostile -p twin
# The crash tests run the switchyard binary as a separate process; `connector test` runs the
# scenarios below.
phase "cargo build --bins" cargo build --release --workspace --bins
# Python and JavaScript connectors: the pinned toolchains (PyPI, npm) into .tools/, the examples
# and the three templates (instantiated by `switchyard connector new`) built once into
# plugins/examples/target/, their unit tests, and every scenario through `switchyard connector
# test` (which leaves their compiled code in plugins/examples/target/compiled/ for
# tests/polyglot.rs, which runs them in the host).
phase "toolchains.sh test" scripts/toolchains.sh test
phase "cargo test (compile)" cargo test --release --workspace --no-run
phase "cargo test (run)" cargo test --release --workspace
awk -v t0="$start" -v t1="$(date +%s.%N)" 'BEGIN { printf "test.sh: total %.1f s\n", t1 - t0 }' >&2
