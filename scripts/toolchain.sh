#!/usr/bin/env bash
# Makes sure the Rust target the functions compile to is installed (idempotent, quick).
set -euo pipefail
if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "toolchain: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi
