#!/usr/bin/env bash
# Agent benchmarks (release build): per-job overhead through the agent vs the engine directly,
# jobs/s, and the RSS of the real `downloader serve` process idle and with 1,000 in-flight jobs.
#   bench/agent/run.sh            # ROUNDS=2000 by default
#   ROUNDS=500 bench/agent/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ulimit -n 8192 2>/dev/null || true
cargo build --release -q -p downloader
cargo build --release -q -p agent --example agent_bench
BENCH_BINARY="$PWD/target/release/downloader" ROUNDS="${ROUNDS:-2000}" \
  ./target/release/examples/agent_bench
