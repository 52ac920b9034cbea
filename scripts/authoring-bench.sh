#!/usr/bin/env bash
# Measures, per language, what a connector author waits for: `switchyard connector new` → build →
# `connector validate` → `connector test` on the template's scenario (cold: no compiled-code
# cache), then a second `connector test` (cached load), and prints the component's size and the
# per-call times `connector test` reports. Figures, not pass/fail: see docs/connectors.md.
#
#   scripts/authoring-bench.sh [rust|python|js ...]     (default: all three)
#
# Needs the toolchains of scripts/toolchains.sh (.tools/) and `cargo build --release --bins`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${SWITCHYARD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard}
[[ -x "$BIN" ]] || { echo "no $BIN: cargo build --release --bins" >&2; exit 1; }
scripts/toolchains.sh install
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f s", b - a }'; }

bench() { # <lang>
  local lang=$1 dir=$WORK/$1 wasm t0 t1 t2 t3 t4
  t0=$(now)
  "$BIN" connector new bench-vendor --lang "$lang" --dir "$dir" >/dev/null
  case "$lang" in
    rust)
      (cd "$dir" && cargo build --quiet --release --target wasm32-wasip2 --target-dir "$WORK/cargo")
      wasm=$WORK/cargo/wasm32-wasip2/release/bench_vendor.wasm ;;
    python)
      (cd "$dir" && "$ROOT/.tools/py/bin/componentize-py" -d wit -w connector componentize app -o bench-vendor.wasm >/dev/null)
      wasm=$dir/bench-vendor.wasm ;;
    js)
      (cd "$dir" && node "$ROOT/.tools/node/node_modules/@bytecodealliance/componentize-js/src/cli.js" connector.js \
        --wit wit --world-name connector --disable http fetch-event --out bench-vendor.wasm >/dev/null)
      wasm=$dir/bench-vendor.wasm ;;
  esac
  t1=$(now)
  "$BIN" connector validate "$wasm" --approved-host api.example.com >/dev/null
  t2=$(now)
  "$BIN" connector test "$wasm" "$dir/scenario.json" --no-cache --quiet >"$WORK/$lang.cold"
  t3=$(now)
  "$BIN" connector test "$wasm" "$dir/scenario.json" --cache "$WORK/cache" --quiet >/dev/null
  "$BIN" connector test "$wasm" "$dir/scenario.json" --cache "$WORK/cache" >"$WORK/$lang.warm"
  t4=$(now)
  printf '%s: new+build %s, validate %s, first test (cold compile) %s; new → passing scenario %s; size %s bytes\n' \
    "$lang" "$(secs "$t0" "$t1")" "$(secs "$t1" "$t2")" "$(secs "$t2" "$t3")" "$(secs "$t0" "$t3")" "$(stat -c %s "$wasm")"
  head -1 "$WORK/$lang.cold" | sed 's/^/  cold:   /'
  head -1 "$WORK/$lang.warm" | sed 's/^/  cached: /'
  # Per-call times of the cached run (instantiation included), per step.
  grep -E '^(ok  |FAIL) ' "$WORK/$lang.warm" | sed -E 's/^(ok  |FAIL) (.*)  \((.*)\)$/  \3  \2/'
  tail -1 "$WORK/$lang.warm" | sed 's/^/  /'
}

for lang in "${@:-rust python js}"; do
  for l in $lang; do bench "$l"; done
done
