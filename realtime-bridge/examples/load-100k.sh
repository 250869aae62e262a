#!/usr/bin/env bash
# 100,000 idle SSE connections on one machine: BRIDGES bridge processes share one port
# (SO_REUSEPORT), GENS `hold` processes each connect PER_GEN from their own 127.0.0.x source
# address. Reports connections per bridge (open descriptors) and RSS per idle connection.
# Loopback only; bounded by HOLD seconds; needs Kafka (./devstack up) and:
#   cargo build -p tributary-realtime-bridge --bin realtime-bridge --example hold
set -euo pipefail
: "${CARGO_TARGET_DIR:=$HOME/.cache/tributary/target}"
BRIDGES=${BRIDGES:-6} GENS=${GENS:-6} PER_GEN=${PER_GEN:-16667} HOLD=${HOLD:-30} PORT=${PORT:-18181}
SECRET=realtime-bridge-load-generator-secret-0123456789
LOGS=$(mktemp -d)
bridge_pids=() gen_pids=()
cleanup() {
  for pid in "${gen_pids[@]}" "${bridge_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$LOGS"
}
trap cleanup EXIT

rss_sum() {
  local total=0 pid kib
  for pid in "${bridge_pids[@]}"; do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    total=$((total + kib))
  done
  echo "$total"
}

for _ in $(seq 1 "$BRIDGES"); do
  TRIBUTARY_HTTP__LISTEN=127.0.0.1:$PORT TRIBUTARY_BRIDGE__REUSE_PORT=true \
    TRIBUTARY_API__TOKEN_SECRET=$SECRET RUST_LOG=warn \
    "$CARGO_TARGET_DIR/debug/realtime-bridge" > /dev/null 2>&1 &
  bridge_pids+=($!)
done
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && break
  sleep 0.2
done
sleep 2
before=$(rss_sum)
for g in $(seq 1 "$GENS"); do
  "$CARGO_TARGET_DIR/debug/examples/hold" --addr=127.0.0.1:$PORT --connections="$PER_GEN" \
    --source=127.0.0.$((g + 1)) --hold-secs="$HOLD" --secret=$SECRET > "$LOGS/hold.$g" 2>&1 &
  gen_pids+=($!)
done
started=$SECONDS
until [ "$(cat "$LOGS"/hold.* 2> /dev/null | grep -c '^opened')" -ge "$GENS" ]; do
  [ $((SECONDS - started)) -lt 120 ] || { echo "generators did not finish connecting" >&2; cat "$LOGS"/hold.* >&2; exit 1; }
  sleep 1
done
sleep 3
after=$(rss_sum)
cat "$LOGS"/hold.*
total=0
for pid in "${bridge_pids[@]}"; do
  fds=$(ls "/proc/$pid/fd" | wc -l)
  echo "bridge $pid: $fds descriptors, $(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status") KiB"
  total=$((total + fds))
done
opened=$(cat "$LOGS"/hold.* | awk '/^opened/ {sum += $2} END {print sum}')
echo "connections held: $opened (bridge descriptors: $total)"
echo "bridges' rss: $before KiB -> $after KiB: $(( (after - before) * 1024 / (opened > 0 ? opened : 1) )) B per idle connection"
