#!/usr/bin/env bash
# Runs the demo: Lever and Certn simulators + switchyard on loopback, one candidate to
# "CERTN - Complete", one without an email.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo run --release -p switchyard-testkit --bin switchyard-demo
