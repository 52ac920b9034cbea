#!/usr/bin/env bash
# The Python and JavaScript component toolchains for switchyard connectors, installed into the
# repository only (.tools/, gitignored), and the builds of the example connectors and templates.
#
#   scripts/toolchains.sh [install]   componentize-py (pip, .tools/py venv) and componentize-js +
#                                     jco (npm ci, .tools/node); skipped when already installed
#   scripts/toolchains.sh examples    install, then build the examples below (not the templates,
#                                     whose instantiation needs the host binary: scripts/test.sh
#                                     runs this while the host compiles)
#   scripts/toolchains.sh build       install, then build into plugins/examples/target/:
#                                       certn_py.wasm        plugins/examples/python (Python, Certn)
#                                       justifacts_js.wasm   plugins/examples/js     (JS, Justifacts)
#                                       broken_js.wasm       plugins/examples/broken_js (a JS
#                                         connector that throws an Error; broken_js_http.wasm: the
#                                         same without --disable http, which the host refuses)
#                                       broken_py.wasm       plugins/examples/broken_py (a Python
#                                         connector whose calls raise, for the traceback test)
#                                       template_{rust,python,js}.wasm  templates/<lang>, instantiated
#                                         as `example-vendor` by `switchyard connector new` (rust only
#                                         when the SDK crate exists)
#   scripts/toolchains.sh unit        build, then the unit tests (Python unittest, node --test, the
#                                     Rust template's cargo test)
#   scripts/toolchains.sh test        unit, then every scenario through `switchyard connector test`
#                                     (HARNESS=node: the Node prototype, plugins/examples/harness);
#                                     skipped when nothing they depend on changed since they passed
#   scripts/toolchains.sh inspect     build, then print size, core instances and imports of each
#
# Needs python3 (3.11+, with venv and pip) and node 20+ with npm; cargo + the wasm32-wasip2 target
# for the Rust template. Reaches only PyPI and the npm registry. Versions are pinned in
# plugins/examples/toolchain/{requirements.txt,package.json,package-lock.json}.
# Environment: FORCE=1 rebuilds components that look up to date and reruns tests that passed with
# the same inputs; SWITCHYARD_SDK=<dir> points at
# the Rust SDK crate (default plugins/sdk); SWITCHYARD=<binary> (default target/release/switchyard);
# JS_DISABLE overrides the componentize-js features
# disabled (default `http fetch-event`); TEMPLATE_BUILD_DIR is the Rust template's build directory
# (cargo's `build-dir`: its intermediate files; default plugins/target/, the connectors', which
# it then shares crates with; its component still lands in plugins/examples/target/cargo/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TOOLS=$ROOT/.tools
TOOLCHAIN=$ROOT/plugins/examples/toolchain
OUT=$ROOT/plugins/examples/target
PY=$TOOLS/py
NODE_DIR=$TOOLS/node
NM=$NODE_DIR/node_modules
COMPONENTIZE_PY=$PY/bin/componentize-py
COMPONENTIZE_JS=$NM/@bytecodealliance/componentize-js/src/cli.js
JCO=$NM/@bytecodealliance/jco/dist/jco.js
SDK=${SWITCHYARD_SDK:-$ROOT/plugins/sdk}
TEMPLATE_BUILD_DIR=${TEMPLATE_BUILD_DIR:-$ROOT/plugins/target}
# The host binary: `connector new` instantiates the templates, `connector test` runs the scenarios.
SWITCHYARD=${SWITCHYARD:-${CARGO_TARGET_DIR:-$ROOT/target}/release/switchyard}
# componentize-js features to disable. Adding `stdio` drops the wasi:filesystem, stdin/stdout and
# terminal imports too, but then an uncaught exception's message no longer reaches stderr.
JS_DISABLE=${JS_DISABLE:-http fetch-event}

say() { printf '%s\n' "toolchains: $*" >&2; }
# Seconds since the epoch with millisecond precision, for the timings we print.
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

install_python() {
  local want have
  want=$(sed -n 's/^componentize-py==//p' "$TOOLCHAIN/requirements.txt")
  have=$("$COMPONENTIZE_PY" --version 2>/dev/null | awk '{print $2}' || true)
  if [[ "$have" == "$want" ]]; then
    return
  fi
  local t0
  t0=$(now)
  say "installing componentize-py $want into .tools/py"
  rm -rf "$PY"
  python3 -m venv "$PY"
  "$PY/bin/pip" install --quiet --disable-pip-version-check -r "$TOOLCHAIN/requirements.txt"
  say "componentize-py installed in $(elapsed "$t0")"
}

install_node() {
  local want have
  want=$(sha256sum "$TOOLCHAIN/package-lock.json" "$TOOLCHAIN/package.json" | sha256sum | cut -c1-64)
  have=$(cat "$NODE_DIR/.installed" 2>/dev/null || true)
  if [[ "$have" == "$want" && -f "$COMPONENTIZE_JS" && -f "$JCO" ]]; then
    return
  fi
  local t0
  t0=$(now)
  say "installing componentize-js and jco into .tools/node (npm ci)"
  mkdir -p "$NODE_DIR"
  cp "$TOOLCHAIN/package.json" "$TOOLCHAIN/package-lock.json" "$NODE_DIR/"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$NODE_DIR/.installed"
  say "componentize-js and jco installed in $(elapsed "$t0")"
}

install() {
  install_python
  install_node
}

# True when $1 exists and is newer than every file under the other arguments.
up_to_date() {
  local out=$1
  shift
  [[ "${FORCE:-0}" != 1 && -f "$out" ]] || return 1
  # Build output below a source (a `target/`, `__pycache__/`) is pruned by name, not by path: the
  # instantiated templates themselves live under plugins/examples/target/.
  [[ -z "$(find "$@" \( -name target -o -name __pycache__ \) -prune -o -type f -newer "$out" -print -quit)" ]]
}

build_python() { # <source dir> <out.wasm> [<wit dir>]
  local src=$1 out=$2 wit=${3:-$ROOT/wit}
  if up_to_date "$out" "$src" "$wit/connector.wit"; then
    say "$(basename "$out") is up to date"
    return
  fi
  local t0
  t0=$(now)
  # `app` is the module that defines `class Screening`; -p puts its directory on the path.
  "$COMPONENTIZE_PY" -d "$wit" -w connector componentize -p "$src" app -o "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
  say "built $(realpath --relative-to="$ROOT" "$out") in $(elapsed "$t0")"
}

build_js() { # <entry.js> <out.wasm> [<wit dir>]
  local entry=$1 out=$2 wit=${3:-$ROOT/wit}
  if up_to_date "$out" "$(dirname "$entry")" "$wit/connector.wit"; then
    say "$(basename "$out") is up to date"
    return
  fi
  local t0
  t0=$(now)
  # The host provides no wasi:http (connectors call out through the contract's outbound-http), so
  # fetch() and the fetch event are disabled: the component then imports no wasi:http interface
  # (disabling only one of the two still imports wasi:http/types). See plugins/examples/README.md.
  # shellcheck disable=SC2086
  node "$COMPONENTIZE_JS" "$entry" --wit "$wit" --world-name connector \
    --disable $JS_DISABLE --out "$out.tmp" >/dev/null
  mv "$out.tmp" "$out"
  say "built $(realpath --relative-to="$ROOT" "$out") in $(elapsed "$t0")"
}

# Creates $OUT/templates/<lang> as `example-vendor` with `switchyard connector new` (the CLI is
# what is tested; it copies the contract to <project>/wit/). The project is made in a scratch
# directory and synced, so unchanged files keep their mtimes and up_to_date stays meaningful.
# Without the binary (not built yet), the same substitution is done here with sed.
instantiate_template() { # <lang>
  local lang=$1 dest=$OUT/templates/$1 tmp=$OUT/templates/.new-$1
  rm -rf "$tmp"
  if [[ -x "$SWITCHYARD" ]]; then
    local sdk_arg=()
    [[ "$lang" == rust ]] && sdk_arg=(--sdk "$SDK")
    "$SWITCHYARD" connector new example-vendor --lang "$lang" --dir "$tmp" "${sdk_arg[@]}" >/dev/null
  else
    say "no $SWITCHYARD (cargo build --release --bins): instantiating templates/$lang with sed"
    mkdir -p "$tmp/wit"
    cp "$ROOT/wit/connector.wit" "$tmp/wit/"
    (cd "$ROOT/templates/$lang" && find . -type f -not -path './target/*' -not -path '*/__pycache__/*') | while read -r f; do
      mkdir -p "$tmp/$(dirname "$f")"
      sed -e 's/{{name}}/example-vendor/g' -e 's/{{Name}}/Example Vendor/g' \
        -e "s#{{sdk_path}}#$SDK#g" "$ROOT/templates/$lang/$f" >"$tmp/$f"
    done
  fi
  (cd "$tmp" && find . -type f) | while read -r f; do
    mkdir -p "$dest/$(dirname "$f")"
    # Keep the old file (and its mtime) when nothing changed.
    cmp -s "$tmp/$f" "$dest/$f" || cp "$tmp/$f" "$dest/$f"
  done
  rm -rf "$tmp"
}

build_templates() {
  instantiate_template python
  build_python "$OUT/templates/python" "$OUT/template_python.wasm" "$OUT/templates/python/wit"
  instantiate_template js
  build_js "$OUT/templates/js/connector.js" "$OUT/template_js.wasm" "$OUT/templates/js/wit"
  if [[ ! -f "$SDK/Cargo.toml" ]]; then
    say "skipping the Rust template: no SDK crate at $SDK (set SWITCHYARD_SDK)"
    return
  fi
  instantiate_template rust
  # The versions the connectors are built and tested with (plugins/Cargo.lock), not whatever the
  # registry holds today: the same build every run, and one compile of the crates it shares with
  # the connectors (TEMPLATE_BUILD_DIR below). Cargo drops the connectors' own entries.
  # Copied before every build, so a change of plugins/Cargo.lock reaches the template.
  cp "$ROOT/plugins/Cargo.lock" "$OUT/templates/rust/Cargo.lock"
  local t0
  t0=$(now)
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    rustup target add wasm32-wasip2
  fi
  CARGO_BUILD_BUILD_DIR=$TEMPLATE_BUILD_DIR cargo build --quiet --release --target wasm32-wasip2 \
    --manifest-path "$OUT/templates/rust/Cargo.toml" --target-dir "$OUT/cargo"
  cp "$OUT/cargo/wasm32-wasip2/release/example_vendor.wasm" "$OUT/template_rust.wasm"
  say "built plugins/examples/target/template_rust.wasm in $(elapsed "$t0")"
}

build_examples() {
  install
  mkdir -p "$OUT"
  build_python "$ROOT/plugins/examples/python" "$OUT/certn_py.wasm"
  build_js "$ROOT/plugins/examples/js/connector.js" "$OUT/justifacts_js.wasm"
  build_python "$ROOT/plugins/examples/broken_py" "$OUT/broken_py.wasm"
  build_js "$ROOT/plugins/examples/broken_js/connector.js" "$OUT/broken_js.wasm"
  # Disabling only fetch-event still imports wasi:http/types: the mistake the host must name.
  JS_DISABLE=fetch-event build_js "$ROOT/plugins/examples/broken_js/connector.js" "$OUT/broken_js_http.wasm"
}

build() {
  build_examples
  build_templates
}

components() {
  local f
  for f in certn_py justifacts_js template_python template_js template_rust; do
    [[ -f "$OUT/$f.wasm" ]] && echo "$OUT/$f.wasm"
  done
  return 0
}

inspect() {
  local f
  for f in $(components); do
    local size instances
    size=$(stat -c %s "$f")
    # Core module instantiations (what a per-store `instances` limit counts), not export bags.
    instances=$(node "$JCO" print "$f" | grep -c '^ *(core instance .*(instantiate ' || true)
    printf '%s: %s bytes, %s core instances\n' "$(realpath --relative-to="$ROOT" "$f")" "$size" "$instances"
    node "$JCO" wit "$f" | sed -n 's/^ *import \(.*\);$/  import \1/p'
  done
}

unit_tests() {
  local t0
  t0=$(now)
  local bindings=$OUT/py-bindings
  if ! up_to_date "$bindings/wit_world/__init__.py" "$ROOT/wit/connector.wit"; then
    rm -rf "$bindings"
    "$COMPONENTIZE_PY" -d "$ROOT/wit" -w connector bindings "$bindings" >/dev/null
  fi
  say "Python unit tests"
  PYTHONPATH="$ROOT/plugins/examples/python:$bindings" PYTHONDONTWRITEBYTECODE=1 \
    python3 -m unittest discover -s "$ROOT/plugins/examples/python/tests" -t "$ROOT/plugins/examples/python"
  PYTHONPATH="$OUT/templates/python:$bindings" PYTHONDONTWRITEBYTECODE=1 \
    python3 -m unittest discover -s "$OUT/templates/python/tests" -t "$OUT/templates/python"
  say "JavaScript unit tests"
  node --test "$ROOT"/plugins/examples/js/test/*.test.mjs "$OUT"/templates/js/test/*.test.mjs
  if [[ -f "$OUT/templates/rust/Cargo.toml" ]]; then
    say "Rust template unit tests"
    # Its logic, natively (no LTO, several codegen units; the component keeps its profile).
    CARGO_BUILD_BUILD_DIR=$TEMPLATE_BUILD_DIR "$ROOT/scripts/native-tests.sh" --quiet \
      --manifest-path "$OUT/templates/rust/Cargo.toml" --target-dir "$OUT/cargo"
  fi
  say "unit tests done in $(elapsed "$t0")"
}

# Every scenario through `switchyard connector test` (HARNESS=node: the Node prototype instead).
scenarios() {
  local t0
  t0=$(now)
  local harness
  if [[ "${HARNESS:-}" == node ]]; then
    say "scenarios through the harness prototype"
    # componentize-py's core modules use extended constant expressions, still behind a flag in node 20.
    harness=(node --experimental-wasm-extended-const "$ROOT/plugins/examples/harness/run.mjs")
  else
    [[ -x "$SWITCHYARD" ]] || { say "no $SWITCHYARD: run cargo build --release --bins"; exit 1; }
    say "scenarios through switchyard connector test"
    harness=("$SWITCHYARD" connector test --quiet --cache "$OUT/compiled")
  fi
  "${harness[@]}" "$OUT/certn_py.wasm" "$ROOT/plugins/examples/scenarios/certn-py.json"
  "${harness[@]}" "$OUT/justifacts_js.wasm" "$ROOT/plugins/examples/scenarios/justifacts-js.json"
  "${harness[@]}" "$OUT/template_python.wasm" "$OUT/templates/python/scenario.json"
  "${harness[@]}" "$OUT/template_js.wasm" "$OUT/templates/js/scenario.json"
  if [[ -f "$OUT/template_rust.wasm" ]]; then
    "${harness[@]}" "$OUT/template_rust.wasm" "$OUT/templates/rust/scenario.json"
  fi
  if [[ "${HARNESS:-}" != node ]]; then
    # broken_py has no scenario (its calls raise); validating it compiles it into the same cache,
    # which tests/polyglot.rs hands to the host.
    "$SWITCHYARD" connector validate --cache "$OUT/compiled" "$OUT/broken_py.wasm" >/dev/null
    "$SWITCHYARD" connector validate --cache "$OUT/compiled" "$OUT/broken_js.wasm" >/dev/null
  fi
  say "scenarios done in $(elapsed "$t0")"
}

# The digest of what the unit tests and the scenarios depend on: the example and template sources
# (as instantiated), their tests and scenarios, the built components, the contract, the host
# binary that runs the scenarios and this script. Not the compiled-code cache they write.
inputs_digest() {
  {
    find "$ROOT/plugins/examples" "$ROOT/templates" "$ROOT/wit" -type f \
      -not -path '*/target/*' -not -path '*/node_modules/*' -not -path '*/__pycache__/*'
    find "$OUT/templates" -type f -not -path '*/target/*' -not -path '*/__pycache__/*' 2>/dev/null || true
    find "$OUT" -maxdepth 1 -name '*.wasm' 2>/dev/null || true
    echo "$SWITCHYARD"
    echo "$ROOT/scripts/toolchains.sh"
  } | LC_ALL=C sort | while read -r f; do sha256sum "$f" 2>/dev/null || echo "missing $f"; done |
    sha256sum | cut -c1-64
}

# Unit tests then scenarios, skipped when their inputs are what they last passed with (and the
# compiled-code cache tests/polyglot.rs reads is still there). FORCE=1 runs them anyway.
tests_once() {
  local stamp=$OUT/.tests-passed digest
  digest=$(inputs_digest)
  if [[ "${FORCE:-0}" != 1 && "${HARNESS:-}" != node && -d "$OUT/compiled" &&
    "$(cat "$stamp" 2>/dev/null || true)" == "$digest" ]]; then
    say "unit tests and scenarios: nothing changed since they passed (FORCE=1 runs them again)"
    return
  fi
  rm -f "$stamp"
  unit_tests
  scenarios
  [[ "${HARNESS:-}" == node ]] || echo "$digest" >"$stamp"
}

case "${1:-install}" in
  install) install ;;
  build) build ;;
  unit) build && unit_tests ;;
  examples) build_examples ;;
  test) build && tests_once ;;
  inspect) build && inspect ;;
  *)
    echo "usage: scripts/toolchains.sh [install|examples|build|unit|test|inspect]" >&2
    exit 2
    ;;
esac
