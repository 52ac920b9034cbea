#!/usr/bin/env bash
# Runs the demo (`switchyard-demo`, in testkit/): Lever and Certn simulators + switchyard on
# loopback, one candidate to "CERTN - Complete", one without an email, then Justifacts, Canditech
# and Gem customers.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The same build (and features) as scripts/test.sh, so that running one after the other compiles
# the host once.
cargo build --release --workspace --bins
exec "${CARGO_TARGET_DIR:-target}/release/switchyard-demo" "$@"
