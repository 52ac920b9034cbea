#!/usr/bin/env bash
# The whole test suite: connector unit tests (native), then host, simulator and end-to-end tests.
# One release build shared by the host, the test kit, the simulators and the tests (target/): the
# `cargo build` below and the final `cargo test` resolve the same features (tests/Cargo.toml says
# how), so the second compiles only the test targets, and those (test harnesses) at opt-level 1
# (scripts/rustc-tests.sh, cargo's rustc for the workspace members; the crates only tests run,
# in Cargo.toml, likewise). Each connector is built once for
# wasm32-wasip2: the production ones into plugins/target/ (scripts/setup.sh), the test and
# benchmark ones into plugins/fixtures/target/; each Python/JavaScript one once by
# scripts/toolchains.sh (plugins/examples/target/, skipped when up to date). Every cargo build on
# the connectors' side (connectors, fixtures, the Rust template; wasm and native) keeps its
# intermediate files in one build directory, plugins/target/ (cargo's `build-dir`), so that the
# crates they share (serde, wit-bindgen and its proc-macro chain: registry crates) compile once per
# profile instead of once per workspace; each keeps its own output directory.
#
# What does not depend on the host's build runs beside it, in the background: the downloads and
# system packages (network and apt), the connectors (their own target directories, mostly one
# crate at a time: LTO with one codegen unit), then the Python/JavaScript builds beside the test
# targets' compile. A background job's output is printed, whole, when the script waits for it;
# each phase prints its wall and CPU time (its processes', children included) when it ends, and
# the list is printed again at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
logs=target/test-logs
mkdir -p "$logs"
: >"$logs/phases"
start=$(date +%s.%N)

# phase <name> <command...>: runs the command (in a subshell, so that its CPU time is its own),
# then prints how long it took.
phase() {
  local name=$1
  shift
  (
    me=$BASHPID
    cpu() { awk '{print $16 + $17}' "/proc/$me/stat"; }
    t0=$(date +%s.%N)
    c0=$(cpu)
    "$@"
    awk -v n="$name" -v t0="$t0" -v t1="$(date +%s.%N)" -v c0="$c0" -v c1="$(cpu)" \
      -v hz="$(getconf CLK_TCK)" -v at="$(awk -v s="$start" -v t="$t0" 'BEGIN { print t - s }')" \
      'BEGIN { printf "test.sh: %-34s %7.1f s wall %7.1f s CPU (from %.0f s)\n", n, t1 - t0, (c1 - c0) / hz, at }' |
      tee -a "$logs/phases" >&2
  )
}

# bg <id> <name> <command...>: a phase in the background, its output into $logs/<id>.log.
declare -A jobs_by_id
bg() {
  local id=$1
  shift
  phase "$@" >"$logs/$id.log" 2>&1 &
  jobs_by_id[$id]=$!
}
# join <id>: waits for a background phase and prints its output; stops the script if it failed.
join() {
  local id=$1 rc=0
  wait "${jobs_by_id[$id]}" || rc=$?
  unset "jobs_by_id[$id]"
  cat "$logs/$id.log" >&2
  if ((rc != 0)); then
    echo "test.sh: $id failed (exit $rc)" >&2
    exit "$rc"
  fi
}
# On exit: the background phases still running (after a failure) are stopped with their
# processes, and the test cluster is removed.
# kill_tree <pid>: the process and all its descendants (a background phase is two subshells
# deep before cargo and the test binaries), children first.
kill_tree() {
  local child
  for child in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$child"; done
  kill -TERM "$1" 2>/dev/null || true
}
cleanup() {
  local pid
  for pid in "${jobs_by_id[@]}"; do
    kill_tree "$pid"
  done
  if [[ -n "${SWITCHYARD_TEST_PG_DIR:-}" ]]; then scripts/pg.sh stop "$SWITCHYARD_TEST_PG_DIR"; fi
}
trap cleanup EXIT

# Debian's packages, installed once here when missing (never from inside a test): Chromium and
# chromedriver, which the console's browser tests (tests/console.rs) drive, and PostgreSQL, for
# the cluster started below. One job, since two apt-gets cannot run at once.
system_packages() {
  if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver
  fi
  scripts/pg.sh install
}
bg system "system packages" system_packages
# The pinned Python and JavaScript toolchains (PyPI, npm) into .tools/: downloads.
bg toolchains-install "toolchains.sh install" scripts/toolchains.sh install

host_triple=$(rustc -vV | sed -n 's/^host: //p')
# The connectors' native unit tests test their logic, not the shipped build: no LTO and several
# codegen units (the components keep their profile: plugins/Cargo.toml).
native_tests() { # <manifest> [cargo test arguments]
  local manifest=$1
  shift
  CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo test --release --manifest-path "$manifest" --target "$host_triple" "$@"
}
connectors() {
  # The connectors' target directory is also the fixtures' build directory: the crates both
  # workspaces use compile once (their components still land in plugins/fixtures/target/).
  export CARGO_BUILD_BUILD_DIR=$PWD/plugins/target
  phase "connectors (wasm)" scripts/setup.sh
  phase "connectors' unit tests (native)" native_tests plugins/Cargo.toml
  # Test and benchmark components (own workspace, kept out of the connectors directory): those
  # the admin tests upload and expect to be rejected, the old-contract Certn, misbehave, hostile,
  # twin.
  phase "fixtures (wasm)" \
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml
  phase "fixtures' unit tests (native)" \
    native_tests plugins/fixtures/Cargo.toml -p misbehave -p hostile -p twin
}
bg connectors "connectors and fixtures" connectors

# The crash tests run the switchyard binary as a separate process; `connector test` runs the
# scenarios below.
phase "cargo build --bins" cargo build --release --workspace --bins --timings
# Python and JavaScript connectors: the examples and the three templates (instantiated by
# `switchyard connector new`) built once into plugins/examples/target/, their unit tests, and
# every scenario through `switchyard connector test` (which leaves their compiled code in
# plugins/examples/target/compiled/ for tests/polyglot.rs, which runs them in the host).
join toolchains-install
bg toolchains "toolchains.sh test" scripts/toolchains.sh test
phase "cargo test (compile)" cargo test --release --workspace --no-run --timings
join connectors
join toolchains
join system
# A throwaway PostgreSQL for the store's tests on that backend (they fail, never skip, without it):
# started once for the whole run, stopped and removed on exit.
eval "$(scripts/pg.sh start)"
# The unit and integration tests (tests/: the end-to-end ones; sim/tests/) in one run, then the
# doc tests. `--tests` runs the targets whose manifest leaves `test` on, as the compile above
# built them; `--lib --bins` would build and run a harness for the targets that set
# `test = false` too (cargo ignores the flag for explicit target filters). Both select targets,
# not packages, so their features (and the build) are the workspace's, as compiled above.
# libtest runs one test per core; the tests mostly wait (loopback HTTP, child processes, timers),
# so a core sits idle through most of this step. RUST_TEST_THREADS=4 would use it, but has not
# yet been run often enough under load to show the suite stays reliable with it.
phase "cargo test (run): unit and integration tests" cargo test --release --workspace --tests
phase "cargo test (run): doc tests" cargo test --release --workspace --doc
echo "test.sh: phases (wall, CPU, start):" >&2
cat "$logs/phases" >&2
awk -v t0="$start" -v t1="$(date +%s.%N)" -v c="$(awk '{print $16 + $17}' "/proc/$$/stat")" \
  -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "test.sh: total %.1f s wall %.1f s CPU\n", t1 - t0, c / hz }' >&2
