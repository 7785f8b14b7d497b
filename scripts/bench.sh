#!/usr/bin/env bash
# `make bench`: runs every benchmark (none is part of `make test`) and writes BENCHMARKS.md:
# the machine, the command, each figure next to its target and, where one exists, a baseline
# measured in the same run. The tables are also printed as they come.
#
#   host and auth      bench/src/main.rs
#   gateway, notifier  bench/src/bin/gateway-bench.rs
#   end to end         bench/src/bin/e2e-bench.rs   (both shapes; needs the services)
#   cluster shape      bench/src/bin/cluster-bench.rs (a 200 MB video on GridFS + RabbitMQ)
#   live events        bench/src/bin/events-bench.rs (both shapes; needs the services)
#   worker             bench/src/bin/worker-bench.rs (inputs cached in ~/.cache/mp3conv/bench)
#   options            bench/src/bin/options-bench.rs (each conversion option against bare ffmpeg)
#   video pages        bench/src/bin/pages-bench.rs (a page link against the direct link)
#   retention          bench/src/bin/retention-bench.rs (the sweeper against plain deletes)
#   quota              bench/src/bin/quota-bench.rs (a job's quota checks against its insert)
#   web app            tests/web.rs `bench_page_load` (ignored by `make test`; headless Chromium)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/toolchain.sh
eval "$(scripts/services.sh env)"
cargo build --release --target wasm32-wasip2 -p probe -p auth -p gateway -p notifier -p web
cargo build --release -p mp3conv -p mp3conv-bench -p native-worker

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
section() {   # section TITLE FILE COMMAND...
  local title=$1 file=$2; shift 2
  echo "== $title" >&2
  "$@" | tee "$out/$file"
}
section "host and auth" host.md ./target/release/mp3conv-bench ./target/release/mp3conv ./target/wasm32-wasip2/release/probe.wasm .
section "gateway and notifications" gateway.md ./target/release/gateway-bench ./target/release/mp3conv ./target/release/mp3conv-worker .
section "end to end" e2e.md ./target/release/e2e-bench ./target/release/mp3conv ./target/release/mp3conv-worker .
section "cluster shape" cluster.md ./target/release/cluster-bench ./target/release/mp3conv ./target/release/mp3conv-worker .
section "live events" events.md ./target/release/events-bench ./target/release/mp3conv ./target/release/mp3conv-worker .
section "worker" worker.md ./target/release/worker-bench ./target/release/mp3conv-worker
section "conversion options" options.md ./target/release/options-bench ./target/release/mp3conv-worker
section "video pages" pages.md ./target/release/pages-bench ./target/release/mp3conv-worker
section "retention" retention.md ./target/release/retention-bench
section "quota" quota.md ./target/release/quota-bench
web_bench() {   # the browser harness lives with the tests: its lines start with "bench| "
  cargo test --release --test web -- --ignored --exact bench_page_load --nocapture |
    sed -n 's/^bench| \{0,1\}//p'
}
section "web app" web.md web_bench

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d), commit"
  echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' with local changes'): $(nproc) cores ($cpu),"
  echo "$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) of memory, $(uname -sr). Every ratio is against a baseline measured"
  echo "in the same run: these machines are noisy, so compare ratios, not raw figures, across runs."
  echo
  echo "## Host and auth"
  echo
  echo "A hello component through the host against a native hyper server; login and token checks."
  echo
  cat "$out/host.md"
  echo
  echo "## Gateway and notifications"
  echo
  echo "\`mp3conv serve\` with the repository's spin.toml and \`mp3conv-worker\` (embedded storage):"
  echo "the gateway against the worker's internal API directly; then, in \`mp3conv up\`, an"
  echo "announcement's way to a recorded notification."
  echo
  cat "$out/gateway.md"
  echo
  echo "## End to end"
  echo
  echo "What a user waits for, in \`mp3conv up\` and in the cluster's shape (host and worker as"
  echo "separate processes on MariaDB, RabbitMQ and SecantusDB), against bare ffmpeg."
  echo
  cat "$out/e2e.md"
  echo
  echo "## Cluster shape"
  echo
  echo "A 10-minute 720p video (about 200 MB) in the shape operators deploy: \`mp3conv serve\` and"
  echo "\`mp3conv-worker\` on MariaDB, RabbitMQ and GridFS on the MongoDB-compatible test server."
  echo
  cat "$out/cluster.md"
  echo
  echo "## Live events"
  echo
  echo "Server-Sent Events through the gateway in both shapes: how soon an event reaches a client, and"
  echo "what 200 idle streams cost against none, measured over the same 60 s window length."
  echo
  cat "$out/events.md"
  echo
  echo "## Worker"
  echo
  echo "Conversion against bare ffmpeg on the same file, memory while a large upload is stored and"
  echo "converted, and throughput by concurrency."
  echo
  cat "$out/worker.md"
  echo
  echo "## Conversion options"
  echo
  echo "Each option's cost: the worker with the option against bare ffmpeg doing the same work on"
  echo "the same file (normalization against ffmpeg's own two loudnorm passes)."
  echo
  cat "$out/options.md"
  echo
  echo "## Video pages"
  echo
  echo "A link to a page showing a clip (yt-dlp behind the worker's guarded proxy) against the direct"
  echo "link to the same clip, and yt-dlp reading the page on its own."
  echo
  cat "$out/pages.md"
  echo
  echo "## Retention"
  echo
  echo "The sweeper removing expired MP3s, alone and as two replicas at once, against the stores'"
  echo "plain deletes of the same files and records."
  echo
  cat "$out/retention.md"
  echo
  echo "## Quotas"
  echo
  echo "What a user's quota checks add to each new job, against storing the job's record."
  echo
  cat "$out/quota.md"
  echo
  echo "## Web app"
  echo
  echo "The page's first load in headless Chromium against a one-file page in the same browser."
  echo
  cat "$out/web.md"
} > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
