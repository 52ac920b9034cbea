#!/usr/bin/env bash
# The whole test suite: connector unit tests (native), then host, simulator and end-to-end tests.
# One release build shared by the host, the test kit, the simulators and the tests (target/), in
# ONE cargo invocation: the `switchyard` binary (the crash tests and `connector test` run it) and
# every test target, so that the test harnesses compile beside the host instead of after it (a
# harness needs the host's dependencies, not the host). Every later cargo command (the test run,
# scripts/bench.sh and scripts/demo.sh's `cargo build --bins`) resolves the same features
# (tests/Cargo.toml says how) and compiles nothing shared again. Test harnesses compile at
# opt-level 0 (scripts/rustc-tests.sh, cargo's rustc for the workspace members; the crates only
# tests run, in Cargo.toml, likewise); the demo, soak and load-generator binaries, which no test
# runs, are not built, nor the benchmark-only code (tests/Cargo.toml's `bench` feature). Each
# connector is built once for wasm32-wasip2: the production ones into plugins/target/
# (scripts/setup.sh), the test and benchmark ones into plugins/fixtures/target/; each
# Python/JavaScript one once by scripts/toolchains.sh (plugins/examples/target/, skipped when up to
# date). Every cargo build on the connectors' side (connectors, fixtures, the Rust template; wasm
# and native) keeps its intermediate files in one build directory, plugins/target/ (cargo's
# `build-dir`), so that the crates they share (serde, wit-bindgen and its proc-macro chain:
# registry crates) compile once per profile instead of once per workspace; each keeps its own
# output directory. The native unit tests keep that profile (scripts/native-tests.sh says how).
#
# What does not need the host's build runs beside it, in the background: the downloads and system
# packages (network and apt), the connectors (their own target directories, mostly one crate at a
# time: LTO with one codegen unit), the Python/JavaScript examples; the templates and every
# scenario (`switchyard connector test`) start as soon as cargo has linked the binary, while the
# test targets still compile, and every test but the end-to-end `polyglot::` ones (which need
# them) runs beside them; the connectors' native unit tests run beside the last tests. A
# background job's output is printed, whole, when the script waits for it; each phase prints its
# wall and CPU time (its processes', children included) when it ends, and the list is printed
# again at the end.
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

# bg <id> <command...>: a command (a phase, or a function running phases) in the background, its
# output into $logs/<id>.log.
declare -A jobs_by_id
bg() {
  local id=$1
  shift
  "$@" >"$logs/$id.log" 2>&1 &
  jobs_by_id[$id]=$!
}
# join <id>: waits for a background job and prints its output; stops the script if it failed.
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
bg system phase "system packages" system_packages

# Written by the build's reader (below) when cargo has linked target/release/switchyard.
binary_ready=$logs/switchyard.linked
rm -f "$binary_ready"
# The Python and JavaScript connectors: the pinned toolchains (PyPI, npm: downloads) into
# .tools/, the examples (which need no host), then, once the binary is linked, the three
# templates (instantiated by `switchyard connector new`), their unit tests and every scenario
# through `switchyard connector test` (which leaves their compiled code in
# plugins/examples/target/compiled/ for tests/polyglot.rs, which runs them in the host), all into
# plugins/examples/target/.
toolchains() {
  phase "toolchains.sh install" scripts/toolchains.sh install
  phase "toolchains.sh examples" scripts/toolchains.sh examples
  while [[ ! -e "$binary_ready" ]]; do sleep 1; done
  phase "toolchains.sh test" scripts/toolchains.sh test
}
bg toolchains toolchains

connectors() {
  # The connectors' target directory is also the fixtures' build directory: the crates both
  # workspaces use compile once (their components still land in plugins/fixtures/target/).
  export CARGO_BUILD_BUILD_DIR=$PWD/plugins/target
  phase "connectors (wasm)" scripts/setup.sh
  # Test and benchmark components (own workspace, kept out of the connectors directory): those
  # the admin tests upload and expect to be rejected, the old-contract Certn, misbehave, hostile,
  # twin.
  phase "fixtures (wasm)" \
    cargo build --release --target wasm32-wasip2 --manifest-path plugins/fixtures/Cargo.toml
}
bg connectors connectors

# The connectors' native unit tests (they feed nothing else: run beside the test run).
native_tests() {
  export CARGO_BUILD_BUILD_DIR=$PWD/plugins/target
  phase "connectors' unit tests (native)" scripts/native-tests.sh --manifest-path plugins/Cargo.toml
  phase "fixtures' unit tests (native)" \
    scripts/native-tests.sh --manifest-path plugins/fixtures/Cargo.toml -p misbehave -p hostile -p twin
}

# The host's build: cargo's JSON messages (stdout; its progress and diagnostics stay on stderr)
# tell when the binary is linked.
read_build_messages() {
  local line
  while IFS= read -r line; do
    if [[ "$line" =~ \"executable\":\"[^\"]*/release/switchyard\" ]]; then touch "$binary_ready"; fi
  done
}
# Known: cargo gives the binary no precedence over the test harnesses (none has dependents), so
# with two jobs its link can wait behind the host's harness and e2e's compile, which delays the
# scenarios (seen in the one fresh run of 848bc8c); `-j3` or linking it first would fix that, untried.
build() {
  cargo build --release --workspace --bin switchyard --tests --timings \
    --message-format=json-render-diagnostics | read_build_messages
}
phase "cargo build (switchyard, test targets)" build
# Already written when cargo linked it (belt and braces: the toolchains job waits for this).
touch "$binary_ready"
join connectors
join system
# A throwaway PostgreSQL for the store's tests on that backend (they fail, never skip, without it):
# started once for the whole run, stopped and removed on exit.
eval "$(scripts/pg.sh start)"

# The unit and integration tests (tests/: the end-to-end ones; sim/tests/), then the doc tests.
# `--tests` runs the targets whose manifest leaves `test` on, as the build above built them;
# `--lib --bins` would build and run a harness for the targets that set `test = false` too
# (cargo ignores the flag for explicit target filters). Both select targets, not packages, so
# their features (and the build) are the workspace's, as compiled above; so does `--workspace
# --test e2e`. Only the end-to-end `polyglot::` tests need what `toolchains.sh test` makes (the
# templates' components, the compiled-code cache of the scenarios), and it starts only once the
# binary is linked: every other test runs beside it (it mostly compiles components, the tests
# mostly wait), the polyglot tests after it.
# libtest runs one binary at a time and one test per core; the tests mostly wait (loopback HTTP,
# child processes, timers). Running the end-to-end binary beside the others, or more test
# threads, would use the idle core, but neither has yet been run often enough under load to show
# the suite stays reliable with it.
phase "cargo test (run): all but polyglot::" cargo test --release --workspace --tests -- --skip polyglot::
join toolchains
# The connectors' native unit tests beside the rest (their own cargo workspace and target
# directory; after toolchains.sh test, whose Rust template shares their build directory): they
# feed nothing else, and the test run leaves a core mostly idle.
bg native native_tests
phase "cargo test (run): polyglot::" cargo test --release --workspace --test e2e -- polyglot::
phase "cargo test (run): doc tests" cargo test --release --workspace --doc
join native
echo "test.sh: phases (wall, CPU, start):" >&2
cat "$logs/phases" >&2
awk -v t0="$start" -v t1="$(date +%s.%N)" -v c="$(awk '{print $16 + $17}' "/proc/$$/stat")" \
  -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "test.sh: total %.1f s wall %.1f s CPU\n", t1 - t0, c / hz }' >&2
