#!/usr/bin/env bash
# Runs the benchmarks (not part of `make test`) and prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
cargo build --release --target wasm32-wasip2 -p probe -p auth -p gateway
cargo build --release -p mp3conv -p mp3conv-bench
./target/release/mp3conv-bench ./target/release/mp3conv ./target/wasm32-wasip2/release/probe.wasm .
