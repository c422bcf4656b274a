#!/usr/bin/env bash
# Active-mode benchmarks (release build), against a broker and an nginx started here on free
# loopback ports:
#   1. jobs/s through RabbitMQ with 1, 2 and 3 `downloader serve` processes sharing one queue
#      (JOBS jobs published at once by `downloader submit`, timed until the last result);
#   2. latency per job, one job at a time (`submit --window 1`), through RabbitMQ vs the
#      passive HTTPS job API (`submit --agent`, keep-alive), same downloader, same nginx.
#   bench/amqp/run.sh                  # JOBS=5000 LATENCY_JOBS=500 PREFETCH=64
# Needs rabbitmq-server and nginx (root: the broker runs as the rabbitmq user).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
JOBS="${JOBS:-5000}"
LATENCY_JOBS="${LATENCY_JOBS:-500}"
PREFETCH="${PREFETCH:-64}"
export PATH="$PATH:/usr/sbin"
cargo build --release -q -p downloader
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/downloader"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; return 1; }
now() { date +%s.%N; }

WORK="$(mktemp -d /tmp/downloader-bench-amqp.XXXXXX)"
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -n "${NODE:-}" ] && rabbit_ctl stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# --- RabbitMQ in $WORK/rabbit -------------------------------------------------------------
AMQP_PORT="$(free_port)"
NODE="dlbench$$@localhost"
mkdir -p "$WORK/rabbit"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$AMQP_PORT" >"$WORK/rabbit/rabbitmq.conf"
echo '[].' >"$WORK/rabbit/enabled_plugins"
as_rabbit=()
if [ "$(id -u)" -eq 0 ]; then chown -R rabbitmq:rabbitmq "$WORK/rabbit"; as_rabbit=(runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq); fi
rabbit_env=(RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  RABBITMQ_DIST_PORT="$(free_port)" RABBITMQ_MNESIA_BASE="$WORK/rabbit/mnesia" RABBITMQ_LOG_BASE="$WORK/rabbit/log"
  RABBITMQ_CONFIG_FILE="$WORK/rabbit/rabbitmq" RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/rabbit/enabled_plugins"
  RABBITMQ_PID_FILE="$WORK/rabbit/pid")
rabbit_ctl() { (cd "$WORK/rabbit" && "${as_rabbit[@]}" env "${rabbit_env[@]}" /usr/lib/rabbitmq/bin/rabbitmqctl -n "$NODE" "$@"); }
(cd "$WORK/rabbit" && "${as_rabbit[@]}" env "${rabbit_env[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server >"$WORK/rabbit.log" 2>&1) &
PIDS+=($!)
wait_port "$AMQP_PORT"
AMQP="amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f"

# --- nginx: GET / -> 200 "ok" over plain HTTP ----------------------------------------------
HTTP_PORT="$(free_port)"
mkdir -p "$WORK/nginx/logs"
user_line=""; [ "$(id -u)" -eq 0 ] && user_line="user root;"
cat >"$WORK/nginx/nginx.conf" <<CONF
$user_line
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  server { listen 127.0.0.1:$HTTP_PORT; location / { return 200 "ok"; } }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
wait_port "$HTTP_PORT"

jobs_file() { # COUNT FILE
  python3 - "$1" "$2" "$HTTP_PORT" <<'PY'
import sys
count, path, port = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(path, "w") as f:
    for i in range(count):
        f.write('{"id":"b%d","url":"http://127.0.0.1:%s/%d"}\n' % (i, port, i))
PY
}
jobs_file "$JOBS" "$WORK/jobs.ndjson"
jobs_file "$LATENCY_JOBS" "$WORK/latency.ndjson"

start_downloader() { # NAME QUEUE [extra env...]
  local name="$1" queue="$2"; shift 2
  mkdir -p "$WORK/$name"
  env -i PATH="$PATH" use_rabbit=true use_http=false use_ssl=false rabbitHost=127.0.0.1 \
    rabbitPort="$AMQP_PORT" apikey=k secret=s DOWNLOADER_RABBIT_QUEUE="$queue" \
    DOWNLOADER_MAX_JOBS="$PREFETCH" DOWNLOADER_DATA_DIR="$WORK/$name" \
    DOWNLOADER_LOG_FORMAT=json "$@" "$BIN" serve >"$WORK/$name/log" 2>&1 &
  PIDS+=($!)
  LAST_PID=$!
  for _ in $(seq 1 300); do grep -q "consuming jobs" "$WORK/$name/log" 2>/dev/null && return 0; sleep 0.1; done
  echo "$name never consumed" >&2; cat "$WORK/$name/log" >&2; return 1
}

echo "downloader active mode: $JOBS jobs (prefetch $PREFETCH per downloader) -> nginx on this machine ($(nproc) cores)"
for n in 1 2 3; do
  pids=()
  for i in $(seq 1 "$n"); do start_downloader "d$n-$i" "bench.$n"; pids+=("$LAST_PID"); done
  "$BIN" submit --amqp "$AMQP" --queue "bench.$n" --window 1 "$WORK/latency.ndjson" >/dev/null 2>&1 # warm-up
  start="$(now)"
  "$BIN" submit --amqp "$AMQP" --queue "bench.$n" "$WORK/jobs.ndjson" >"$WORK/out.$n" 2>"$WORK/err.$n"
  end="$(now)"
  python3 -c "import sys; j,s,e=int(sys.argv[1]),float(sys.argv[2]),float(sys.argv[3]); print('  %d downloader(s): %6.0f jobs/s  (%.2f s)  [%s]' % (int(sys.argv[4]), j/(e-s), e-s, sys.argv[5]))" \
    "$JOBS" "$start" "$end" "$n" "$(tail -1 "$WORK/err.$n")"
  for pid in "${pids[@]}"; do kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; done
done

echo "latency per job, one at a time ($LATENCY_JOBS jobs, after $LATENCY_JOBS warm-up jobs):"
start_downloader lat-amqp bench.latency
pid_amqp="$LAST_PID"
"$BIN" submit --amqp "$AMQP" --queue bench.latency --window 1 "$WORK/latency.ndjson" >/dev/null 2>&1
start="$(now)"
"$BIN" submit --amqp "$AMQP" --queue bench.latency --window 1 "$WORK/latency.ndjson" >"$WORK/lat-amqp.out" 2>/dev/null
end="$(now)"
amqp_ms="$(python3 -c "import sys; print('%.3f' % ((float(sys.argv[2])-float(sys.argv[1]))*1000/int(sys.argv[3])))" "$start" "$end" "$LATENCY_JOBS")"
kill -TERM "$pid_amqp"; wait "$pid_amqp" 2>/dev/null || true

API_PORT="$(free_port)"
mkdir -p "$WORK/passive"
env -i PATH="$PATH" use_http=true use_ssl=true apikey=k secret=s DOWNLOADER_LISTEN="127.0.0.1:$API_PORT" \
  DOWNLOADER_DATA_DIR="$WORK/passive" DOWNLOADER_LOG_FORMAT=json "$BIN" serve >"$WORK/passive/log" 2>&1 &
PIDS+=($!)
pid_passive=$!
wait_port "$API_PORT"
agent=(--agent "https://127.0.0.1:$API_PORT" --apikey k --secret s --insecure --window 1)
"$BIN" submit "${agent[@]}" "$WORK/latency.ndjson" >/dev/null 2>&1
start="$(now)"
"$BIN" submit "${agent[@]}" "$WORK/latency.ndjson" >"$WORK/lat-https.out" 2>/dev/null
end="$(now)"
https_ms="$(python3 -c "import sys; print('%.3f' % ((float(sys.argv[2])-float(sys.argv[1]))*1000/int(sys.argv[3])))" "$start" "$end" "$LATENCY_JOBS")"
kill -TERM "$pid_passive"; wait "$pid_passive" 2>/dev/null || true
engine_ms="$(python3 -c "
import json,sys
v=[json.loads(l)['metrics']['overall'] for l in open(sys.argv[1])]
v.sort(); print('%.3f' % v[len(v)//2])" "$WORK/lat-https.out")"
echo "  passive HTTPS API : $https_ms ms/job (engine's own time, median: $engine_ms ms)"
echo "  RabbitMQ          : $amqp_ms ms/job"
python3 -c "import sys; print('  added by RabbitMQ : %.3f ms/job' % (float(sys.argv[1])-float(sys.argv[2])))" "$amqp_ms" "$https_ms"
