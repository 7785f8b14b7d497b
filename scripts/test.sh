#!/usr/bin/env bash
# Runs every test: installs and starts what the tests need, builds the functions and the test
# components for wasm32-wasip2, then runs the whole workspace's tests against real services.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/toolchain.sh
eval "$(scripts/services.sh env)"

# The tests build these themselves before running one (tests/common/mod.rs, `COMPONENTS`), so
# `cargo test` alone never runs a stale component; building them first here only puts compile
# errors before the test run. Keep the package list the same as `COMPONENTS`: another set can
# resolve shared dependencies' features differently and rebuild them back and forth.
echo "test: building the components (wasm32-wasip2)" >&2
cargo build --release --target wasm32-wasip2 -p auth -p gateway -p notifier -p web -p probe

echo "test: running the tests" >&2
cargo test --release --workspace --exclude probe --no-fail-fast
