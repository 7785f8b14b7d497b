#!/usr/bin/env bash
# Runs the benchmarks (not part of `make test`) and prints Markdown tables: the host and auth
# (bench/src/main.rs), the gateway (bench/src/bin/gateway-bench.rs), then the worker (bench/src/bin/worker-bench.rs; its inputs are generated
# once into ~/.cache/mp3conv/bench, a few minutes the first time).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
command -v ffmpeg >/dev/null || scripts/services.sh
cargo build --release --target wasm32-wasip2 -p probe -p auth -p gateway -p notifier
cargo build --release -p mp3conv -p mp3conv-bench -p native-worker
./target/release/mp3conv-bench ./target/release/mp3conv ./target/wasm32-wasip2/release/probe.wasm .
echo
./target/release/gateway-bench ./target/release/mp3conv ./target/release/mp3conv-worker .
echo
./target/release/worker-bench ./target/release/mp3conv-worker
