#!/usr/bin/env bash
# Benchmarks of the ingest-api: POST /v1/uploads throughput and p50/p99 latency (wrk, several
# runs, median reported), and the API's RSS during a direct upload of SIZE bytes through
# presigned URLs. Runs a release build of the API on 127.0.0.1:8090 against the local stack.
# Loopback only; bounded in time; stops what it started.
#
#   bench/ingest-api.sh            # defaults: RUNS=3 DURATION=15 CONNECTIONS='4 8 16 32' WARMUP=30 SIZE=2 GiB
#   SIZE=0 bench/ingest-api.sh     # throughput and latency only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source stack/env.sh
RUNS=${RUNS:-3} DURATION=${DURATION:-15} CONNECTIONS=${CONNECTIONS:-4 8 16 32} SIZE=${SIZE:-2147483648}
WARMUP=${WARMUP:-30}
PORT=${BENCH_PORT:-8090}

command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo; $sudo_ apt-get install -y -qq wrk >&2; }
./devstack engines
# Tributary's own services would consume the benchmark's events on the same cores; this
# measures the API alone in front of the engines.
(source stack/services.sh && services_down)
cargo build --release --locked -p tributary-ingest-api >&2
binary="$CARGO_TARGET_DIR/release/ingest-api"

TRIBUTARY_HTTP__LISTEN="127.0.0.1:$PORT" RUST_LOG=warn \
  TRIBUTARY_API__RATE_LIMIT_PER_SECOND=1000000000 TRIBUTARY_API__RATE_LIMIT_BURST=1000000000 \
  "$binary" > "$TRIBUTARY_STATE_DIR/bench-ingest-api.log" 2>&1 &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do port_open "$PORT" && break; sleep 0.5; done
port_open "$PORT" || die "benchmark api did not start; see $TRIBUTARY_STATE_DIR/bench-ingest-api.log"

tenant=$(curl -sf -X POST "http://127.0.0.1:$PORT/v1/admin/tenants" -H 'authorization: Bearer dev-admin-token' \
  -H 'content-type: application/json' \
  -d '{"name": "bench", "byte_quota": 4000000000000000000, "max_concurrent_uploads": 2000000000, "max_file_size": 100000000000}')
API_KEY=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["api_key"])' <<<"$tenant")
export API_KEY

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB"
# CPU spent per initiation by each process of the stack (and the load generator), so the
# figures say which process bounds the rate on this machine's shared cores.
engine_pids="api=$api_pid"
for engine in kafka cassandra garage; do
  engine_pids+=" $engine=$(cat "$TRIBUTARY_STATE_DIR/$engine/pid" 2>/dev/null || true)"
done
wrk_run() {  # $1 connections, $2 seconds
  # shellcheck disable=SC2086
  python3 bench/cpu_per_request.py $engine_pids -- \
    wrk -t2 -c"$1" -d"$2s" --latency -s bench/initiate.lua "http://127.0.0.1:$PORT/v1/uploads"
}
# The JVMs (Kafka, Cassandra) compile their hot paths during the first tens of thousands of
# requests; measured runs start warm, as a server in service is.
echo "warm-up: ${WARMUP}s at 32 connections (not counted)"
wrk_run 32 "$WARMUP" | grep '^RESULT' | sed 's/^RESULT /  /'
for connections in $CONNECTIONS; do
  echo "POST /v1/uploads: $RUNS runs of ${DURATION}s, $connections connections, 2 wrk threads"
  results=()
  for run in $(seq 1 "$RUNS"); do
    out=$(wrk_run "$connections" "$DURATION")
    line=$(grep '^RESULT' <<<"$out")
    cpu=$(grep '^CPU_US_PER_REQUEST' <<<"$out" | cut -d' ' -f2-)
    echo "  run $run: ${line#RESULT }"
    echo "         cpu us/initiation: $cpu"
    results+=("${line#RESULT } $cpu")
  done
  printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [dict(kv.split("=") for kv in line.split()) for line in sys.stdin if line.strip()]
print("  median " + " ".join(f"{key}={statistics.median(float(r[key]) for r in rows):.1f}" for key in rows[0] if key != "errors"))
'
done
[ "$SIZE" -gt 0 ] || exit 0   # SIZE=0: throughput only
echo "direct upload of $SIZE bytes through presigned URLs, API RSS sampled every 100 ms:"
python3 bench/upload_rss.py "http://127.0.0.1:$PORT" "$API_KEY" "$api_pid" "$SIZE"
