#!/usr/bin/env bash
# Cargo's rustc for the workspace members (`build.rustc-workspace-wrapper`, .cargo/config.toml):
# a test harness (`rustc --test`: a crate's unit tests, tests/*.rs, sim/tests/) is compiled at
# opt-level 1; every other unit exactly as cargo asks. Cargo profiles cannot tell a crate's
# unit-test harness from the crate itself, and the host's harness is the whole host again: at the
# release profile's opt-level 3 it was the test compile's longest unit (206 s of its 335 s, wall,
# in a fresh run of 9195ec2; the simulators' harness: 25.5 CPU s at 3, 22.0 at 1). The code
# under test keeps its profile wherever it runs as built: the `switchyard` binary the end-to-end
# tests start, wasmtime, the simulators, the connectors. A later `-C opt-level` overrides an earlier one. Cargo hashes the wrapper into the
# members' artifact names, so its outputs never mix with a build made without it.
rustc=$1
shift
for arg; do
  if [[ "$arg" == --test ]]; then
    exec "$rustc" "$@" -C opt-level=1
  fi
done
exec "$rustc" "$@"
