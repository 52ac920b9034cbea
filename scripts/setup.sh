#!/usr/bin/env bash
# Shared by demo.sh and test.sh: the wasm target and the connector components.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
