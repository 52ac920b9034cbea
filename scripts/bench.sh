#!/usr/bin/env bash
# The benchmark: builds what it needs (the connector components, `switchyard` and
# `switchyard-loadgen`, the same build as scripts/test.sh), then runs tests/bench.rs, which drives
# the real `switchyard serve` from a separate load-generator process over loopback and prints one
# table (figure, value, reference measured in the same run, ratio, target). Figures, not
# pass/fail; run it on a quiet machine (others' builds make the figures noise).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --workspace --bins
# The PostgreSQL rows (1 and 3 hosts on one database) run on a throwaway cluster.
eval "$(scripts/pg.sh start)"
trap 'scripts/pg.sh stop "$SWITCHYARD_TEST_PG_DIR"' EXIT
# `bench`: the benchmark-only code the test command leaves out (tests/Cargo.toml).
cargo bench -p switchyard-tests --bench host --features bench
