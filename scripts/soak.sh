#!/usr/bin/env bash
# The soak benchmark (opt-in; never part of scripts/test.sh): steady load through the whole flow
# (signed Lever webhooks → Certn simulator calling back to Complete, Gem and Canditech beside it)
# for 100,000 webhooks or 30 minutes, with retention short enough to act during the run. Prints a
# row per sample and a start / middle / end table: acks/s, p99 ack latency, events/s, RSS, the
# database on disk, open fds and connector state bytes per integration. Figures, not pass/fail.
#
#   scripts/soak.sh                        # the full run
#   scripts/soak.sh --minutes 3            # a quick try
#   scripts/soak.sh --rate 100 --retention-secs 120 --interval-secs 20
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p switchyard-testkit --bin switchyard-soak
exec target/release/switchyard-soak "$@"
