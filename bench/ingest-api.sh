#!/usr/bin/env bash
# Benchmarks of the ingest-api: POST /v1/uploads throughput and p50/p99 latency (wrk, several
# runs, median reported), and the API's RSS during a direct upload of SIZE bytes through
# presigned URLs. Runs a release build of the API on 127.0.0.1:8090 against the local stack.
# Loopback only; bounded in time; stops what it started.
#
#   bench/ingest-api.sh            # defaults: RUNS=3 DURATION=15 CONNECTIONS=32 SIZE=2 GiB
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source stack/env.sh
RUNS=${RUNS:-3} DURATION=${DURATION:-15} CONNECTIONS=${CONNECTIONS:-32} SIZE=${SIZE:-2147483648}
PORT=${BENCH_PORT:-8090}

command -v wrk >/dev/null || { sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_=sudo; $sudo_ apt-get install -y -qq wrk >&2; }
./devstack engines
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
echo "POST /v1/uploads: $RUNS runs of ${DURATION}s, $CONNECTIONS connections, 2 wrk threads"
results=()
for run in $(seq 1 "$RUNS"); do
  line=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/initiate.lua "http://127.0.0.1:$PORT/v1/uploads" | grep '^RESULT')
  echo "run $run: ${line#RESULT }"
  results+=("$line")
done
printf '%s\n' "${results[@]}" | python3 -c '
import statistics, sys
rows = [dict(kv.split("=") for kv in line.split()[1:]) for line in sys.stdin if line.strip()]
for key in ("requests_per_sec", "p50_ms", "p99_ms"):
    print(f"median {key}: {statistics.median(float(r[key]) for r in rows):.2f}")
'
echo "direct upload of $SIZE bytes through presigned URLs, API RSS sampled every 100 ms:"
python3 bench/upload_rss.py "http://127.0.0.1:$PORT" "$API_KEY" "$api_pid" "$SIZE"
