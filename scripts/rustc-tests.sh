#!/usr/bin/env bash
# Cargo's rustc for the workspace members (`build.rustc-workspace-wrapper`, .cargo/config.toml):
# a test harness (`rustc --test`: a crate's unit tests, tests/*.rs, sim/tests/) is compiled at
# opt-level 0; every other unit exactly as cargo asks. Cargo profiles cannot tell a crate's
# unit-test harness from the crate itself, and the host's harness is the whole host again. At
# opt-level 1 the host's harness was the fresh build's longest unit (264 s of its 986, wall;
# 218 CPU s) and e2e's took 105 CPU s; at 0 they take 54 and 12, while the tests mostly wait on
# loopback HTTP, child processes, SQLite and wasmtime, which keep their profile (the host's unit
# tests: 2.3 CPU s at opt-level 1, 3.0 at 0).
# The code under test keeps its profile wherever it runs as built: the `switchyard` binary the
# end-to-end tests start, wasmtime, SQLite, the simulators, the connectors. A later `-C
# opt-level` overrides an earlier one. Cargo hashes the wrapper's path, not its text, into the
# members' artifact names: its outputs never mix with a build made without it, but a change of
# this file reaches a warm target directory only with the harnesses' next change.
rustc=$1
shift
for arg; do
  if [[ "$arg" == --test ]]; then
    exec "$rustc" "$@" -C opt-level=0
  fi
done
exec "$rustc" "$@"
