#!/usr/bin/env bash
# `cargo test --release` of a connector workspace (plugins/, plugins/fixtures/, the Rust
# template) for the host instead of wasm32-wasip2: the connectors' native unit tests test their
# logic, not the shipped build, so no LTO and several codegen units (the components keep their
# profile, plugins/Cargo.toml).
#
#   scripts/native-tests.sh --manifest-path plugins/Cargo.toml [cargo test arguments]
#
# Set as the host target's rustflags, not as the profile (CARGO_PROFILE_RELEASE_LTO=false): with
# `--target`, target rustflags reach only the target's units, so the proc macros and build
# scripts (serde_derive, wit-bindgen's macro and its wit-parser/wit-component/wasmparser chain,
# ~40 CPU s) keep the profile of the wasm build and are reused from the shared build directory
# (plugins/target/) instead of compiled again under another profile hash. Later `-C` flags win:
# these override the `-C lto` and `-C linker-plugin-lto` cargo derives from `lto = true`.
set -euo pipefail
host=$(rustc -vV | sed -n 's/^host: //p')
export "CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUSTFLAGS=-C lto=off -C linker-plugin-lto=no -C embed-bitcode=no -C codegen-units=16"
exec cargo test --release --target "$host" "$@"
