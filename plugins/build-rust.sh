#!/usr/bin/env bash
# Builds one Rust reducer crate of this workspace into a WebAssembly component the
# host accepts, with no WASI imports:
#
#   plugins/build-rust.sh CRATE      ->  target/wasm32-unknown-unknown/plugin/CRATE.wasm
#
# It is one cargo command: the `plugin` profile (small and fast), the
# wasm32-unknown-unknown target, and the toolchain's own `wasm-component-ld` as the
# linker, which turns the module into a component as it links.
set -euo pipefail
crate=${1:?usage: plugins/build-rust.sh CRATE (e.g. user)}
cd "$(dirname "$0")/.."
cargo build --profile plugin --target wasm32-unknown-unknown -p "$crate" \
    --config 'target.wasm32-unknown-unknown.linker="wasm-component-ld"'
wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/plugin/${crate//-/_}.wasm"
echo "$wasm ($(wc -c <"$wasm") bytes)"
