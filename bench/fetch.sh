#!/usr/bin/env bash
# One mutual-TLS request from the command line: `downloader fetch` against curl with the same
# PEM identity and CA, to the same local nginx (tests/interop/nginx.conf.in), in one hyperfine
# run; then the engine's job throughput against minimal hyper+rustls loops (criterion,
# crates/engine/benches/jobs.rs): fresh connections (`fresh_mtls_job`) and kept-alive ones
# (`keep_alive_job`: the engine with keep_alive against a loop reusing one connection).
# Jobs/s = 1 s / the time per iteration. Last, crates/engine/benches/ratio.rs runs the same four
# kinds of job interleaved, round after round, and reports the median of the per-round ratios:
# on a shared, noisy machine that is the number to quote. Needs: nginx, curl, hyperfine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release -q -p downloader
bin=target/release/downloader
f=$(pwd)/tests/fixtures
out=${BENCH_OUT:-target/bench}
mkdir -p "$out"

dir=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
user_line=""; [ "$(id -u)" = 0 ] && user_line="user root;"
sed -e "s#{dir}#$dir#g" -e "s#{fixtures}#$f#g" -e "s#{port}#$port#g" -e "s#{user_line}#$user_line#g" \
  tests/interop/nginx.conf.in > "$dir/nginx.conf"
nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" &
nginx_pid=$!
trap 'kill $nginx_pid 2>/dev/null; wait $nginx_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done

url="https://localhost:$port/"
id="$f/client/p256"
hyperfine -N --warmup 5 --runs "${RUNS:-50}" --export-markdown "$out/fetch-vs-curl.md" \
  -n "curl (PEM, --cacert)" \
  "curl -s -o /dev/null --cert $id/chain.pem --key $id/key.pem --cacert $f/ca/root.pem $url" \
  -n "downloader fetch (PEM, --trust custom)" \
  "$bin fetch $url --cert $id/chain.pem --key $id/key.pem --cacert $f/ca/root.pem --trust custom" \
  -n "downloader fetch (PEM, default trust: system + --cacert)" \
  "$bin fetch $url --cert $id/chain.pem --key $id/key.pem --cacert $f/ca/root.pem" \
  -n "curl (PEM, --http1.1)" \
  "curl -s -o /dev/null --http1.1 --cert $id/chain.pem --key $id/key.pem --cacert $f/ca/root.pem $url" \
  -n "downloader fetch (PEM, --http1.1, --trust custom)" \
  "$bin fetch $url --http1.1 --cert $id/chain.pem --key $id/key.pem --cacert $f/ca/root.pem --trust custom"

kill $nginx_pid; wait $nginx_pid 2>/dev/null || true
cargo bench -q -p engine --bench jobs -- --noplot 2>&1 | tee "$out/engine-jobs.txt"
cargo bench -q -p engine --bench ratio 2>&1 | tee "$out/engine-ratio.txt"
