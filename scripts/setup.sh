#!/usr/bin/env bash
# Shared by demo.sh and test.sh: the wasm target and the connector components.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
# misbehave, hostile and twin built here before they moved to plugins/fixtures/: a checkout built
# before the move must not serve them from the default connectors directory.
rm -f plugins/target/wasm32-wasip2/release/{misbehave,hostile,twin}.wasm
