#!/usr/bin/env bash
# Projector benchmark: a burst of EVENTS lifecycle events (50 tenants, uploads of 9 events
# each) published to the local Kafka while a live projector folds them into the local
# Cassandra; sustained events/s and the time from the burst's end until the read models have
# caught up. Median over RUNS. The engines must be up (`./devstack engines`).
#
#   bench/projector.sh      # RUNS=3 EVENTS=100000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source stack/env.sh
RUNS=${RUNS:-3}
export EVENTS=${EVENTS:-100000}
cargo build --release --locked -p tributary-projections --example projector_burst >&2 || die "build failed"
for run in $(seq 1 "$RUNS"); do
  RUST_LOG=warn "$CARGO_TARGET_DIR/release/examples/projector_burst" | tail -n 1
done | tee /dev/stderr | python3 -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.startswith("{")]
rate = statistics.median(r["events_per_sec"] for r in runs)
lag = statistics.median(r["lag_after_burst_secs"] for r in runs)
events = runs[0]["events"]
print(f"median over {len(runs)} runs of {events} events: {rate:.0f} events/s projected, "
      f"caught up {lag:.2f} s after the burst ended")
'
