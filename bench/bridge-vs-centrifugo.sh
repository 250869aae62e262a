#!/usr/bin/env bash
# Realtime bridge vs Centrifugo (issue #6), in the same run on the same machine:
#   - RSS per idle SSE connection (bridge: /v1/events over the lean HTTP/1.1 path;
#     Centrifugo: its uni-directional SSE transport /connection/uni_sse, JWT auth whose
#     `channels` claim subscribes the connection to one channel);
#   - fan-out latency p50/p99 of one event delivered to CONNECTIONS subscribers of one tenant
#     (bridge) or one channel (Centrifugo), EVENTS events one at a time, measured by the
#     same load generator (realtime-bridge/examples/load.rs) from the publish call to the
#     frame read by each subscriber:
#       bridge:     produce to Kafka -> broker append -> bridge reads the log, encodes once,
#                   writes every socket -> subscriber reads;
#       centrifugo: POST /api/publish (HTTP, loopback, kept-alive connection) -> Centrifugo
#                   writes every socket -> subscriber reads. Centrifugo does not read Kafka:
#                   its latency has no log in its path.
#
# Loopback only; every generator run is bounded (--deadline-secs, and `timeout`, which also
# ends the server process the generator started); each run holds the shared stack lock, so
# no other benchmark or stack test overlaps it. Needs Kafka (./devstack up) and Go (for the
# first, cached, Centrifugo install).
#
#   bench/bridge-vs-centrifugo.sh                 # RUNS=5 CONNECTIONS=10000 EVENTS=20
#   RUNS=3 CONNECTIONS=5000 bench/bridge-vs-centrifugo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=../stack/env.sh
source stack/env.sh

RUNS="${RUNS:-5}"
CONNECTIONS="${CONNECTIONS:-10000}"
EVENTS="${EVENTS:-20}"
DEADLINE="${DEADLINE:-150}"
LOCK="${LOCK:-/tmp/tributary-stack.lock}"
CENTRIFUGO_VERSION=v6.9.1
CENTRIFUGO_DIR="$TRIBUTARY_CACHE/centrifugo-$CENTRIFUGO_VERSION"
CENTRIFUGO="$CENTRIFUGO_DIR/bin/centrifugo"
OUT="${OUT:-$TRIBUTARY_CACHE/bench/bridge-vs-centrifugo-$(date -u +%Y%m%dT%H%M%SZ)}"

if [ ! -x "$CENTRIFUGO" ]; then
  command -v go >/dev/null || die "go is needed to install Centrifugo $CENTRIFUGO_VERSION"
  log "installing Centrifugo $CENTRIFUGO_VERSION into $CENTRIFUGO_DIR (first run only)"
  GOFLAGS=-mod=mod GOBIN="$CENTRIFUGO_DIR/bin" nice -n 19 \
    go install "github.com/centrifugal/centrifugo/v6@$CENTRIFUGO_VERSION"
fi
log "building the bridge and the load generator (release)"
nice -n 19 cargo build --release --locked -p tributary-realtime-bridge --bin realtime-bridge --example load
LOAD="$CARGO_TARGET_DIR/release/examples/load"
port_open "$KAFKA_PORT" || die "Kafka is not running on 127.0.0.1:$KAFKA_PORT (./devstack up)"

mkdir -p "$OUT"
log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), $(uname -r); load average $(cut -d' ' -f1-3 /proc/loadavg)"
log "results in $OUT"
: >"$OUT/results.txt"
for run in $(seq 1 "$RUNS"); do
  for target in bridge centrifugo; do
    log "run $run/$RUNS: $target, $CONNECTIONS connections, $EVENTS events"
    # Each run connects from its own 127.0.x.y: 10,000 sockets of the run before are still in
    # TIME_WAIT, and reusing their source ports fails with "address already in use".
    source_addr="127.0.$((20 + run)).$([ "$target" = bridge ] && echo 1 || echo 2)"
    # timeout signals the generator's whole process group: the server it started goes too.
    # flock -o: the lock's descriptor must not be inherited by the servers.
    if flock -o "$LOCK" timeout --kill-after=10 $((DEADLINE + 60)) \
      "$LOAD" --target="$target" --connections="$CONNECTIONS" --events="$EVENTS" \
      --deadline-secs="$DEADLINE" --centrifugo-bin="$CENTRIFUGO" --sources="$source_addr" \
      >"$OUT/$target-$run.log" 2>&1; then
      echo "run=$run $(grep '^RESULT' "$OUT/$target-$run.log")" >>"$OUT/results.txt"
      grep -E '^(RESULT|fan-out|rss)' "$OUT/$target-$run.log" >&2
    else
      log "run $run ($target) failed; see $OUT/$target-$run.log"
      tail -3 "$OUT/$target-$run.log" >&2
    fi
    sleep 2
  done
done

python3 - "$OUT/results.txt" <<'EOF'
import statistics, sys
rows = []
for line in open(sys.argv[1]):
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    if fields.get("target"):
        rows.append(fields)
keys = [("rss_per_conn_b", "B/conn"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"), ("server_cpu_ms", "cpu ms")]
print("| run | target | delivered | " + " | ".join(label for _, label in keys) + " |")
print("|---|---|---|" + "---|" * len(keys))
for r in rows:
    print(f"| {r['run']} | {r['target']} | {r['delivered']}/{r['expected']} | " + " | ".join(r[k] for k, _ in keys) + " |")
medians = {}
for target in ("bridge", "centrifugo"):
    sel = [r for r in rows if r["target"] == target]
    if sel:
        medians[target] = {k: statistics.median(float(r[k]) for r in sel) for k, _ in keys}
        print(f"| median ({len(sel)} runs) | {target} | | " + " | ".join(f"{medians[target][k]:.1f}" for k, _ in keys) + " |")
if len(medians) == 2:
    b, c = medians["bridge"], medians["centrifugo"]
    print("| ratio centrifugo / bridge | | | " + " | ".join(f"{c[k] / b[k]:.2f}" if b[k] else "-" for k, _ in keys) + " |")
EOF
