#!/usr/bin/env bash
# Image-path benchmark: Tributary's transformer against sharp (npm, prebuilt libvips) on the same
# machine, same inputs, same core, in one run. Two ops, each timed by the tool itself (inputs in
# memory, outputs of the last iteration written to disk):
#   sharp-jpeg      sharp's own benchmark: 2725x2225 JPEG -> width 720 JPEG q80
#   tributary-webp  Tributary's job: phone JPEG -> auto-orient -> fit 1280 and 320, WebP q80
# Prints median images/s per core over RUNS, output bytes and SSIM of both tools' outputs against
# the same reference, as a Markdown table for docs/BENCHMARKS.md.
#
#   bench/images.sh      # RUNS=5 ITER_JPEG=10 ITER_WEBP=5 BENCH_CPU=0 BENCH_IMAGES=/work/shared/bench-images
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source stack/env.sh
RUNS=${RUNS:-5} ITER_JPEG=${ITER_JPEG:-10} ITER_WEBP=${ITER_WEBP:-5} CPU=${BENCH_CPU:-0}
IMAGES=${BENCH_IMAGES:-/work/shared/bench-images}
OUT=${BENCH_OUT:-$TRIBUTARY_STATE_DIR/bench-images}

for t in node npm cargo taskset ffmpeg ffprobe python3; do command -v "$t" >/dev/null || die "$t is required"; done

# Same bytes as bench-images/SOURCES.md, or the figures do not compare with published ones.
(cd "$IMAGES" && sha256sum --quiet -c) <<'EOF' || die "inputs in $IMAGES differ from bench-images/SOURCES.md"
0de3824939c164c81b2742b83b51a0f621ed1142b57ef8ad3f33a5a2c2634dd0  2569067123_aca715a2ee_o.jpg
358bd1a1cc19535df2c0385c3883a44e31afc8e4f52db73971b3fefa9839ae3c  book-beside-flowers.jpg
02020a8be96d4c802c672804d5c5d9723fdefc4c01697d3a294bc27c72cd3dd0  empty_gps.jpg
654dfb2168e9850704b6a60e4ab8e6306a627148a60411f1dea54b0667a1aabe  japanese-shop.jpg
EOF

# sharp from its lock file (exact sharp + libvips build); reinstalled only when the lock changes.
sharp_dir=bench/images/sharp
stamp=$sharp_dir/node_modules/.tributary-lock-hash
hash=$(sha256sum "$sharp_dir/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$hash" ]; then
  log "installing sharp (npm ci in $sharp_dir)"
  (cd "$sharp_dir" && npm ci --no-audit --no-fund --loglevel=error >&2) || die "npm ci failed in $sharp_dir"
  echo "$hash" > "$stamp"
fi

cargo build --release --locked -p tributary-processors --bin transformer >&2 \
  || die "could not build the transformer (cargo output above); no figures without both tools"
transformer="$CARGO_TARGET_DIR/release/transformer"

jpeg_files=("$IMAGES/2569067123_aca715a2ee_o.jpg")
webp_files=("$IMAGES/book-beside-flowers.jpg" "$IMAGES/empty_gps.jpg" "$IMAGES/japanese-shop.jpg")

# One measurement: prints the tool's JSON line to $OUT/run<N>/<tool>-<op>.json, outputs beside it.
# Both tools are pinned to the same core and run single-threaded, so the figure is per core.
measure() {
  local run=$1 tool=$2 op=$3 iter=$4; shift 4
  local dir="$OUT/run$run/$tool-$op"
  mkdir -p "$dir"
  case $tool in
    sharp) UV_THREADPOOL_SIZE=1 taskset -c "$CPU" node "$sharp_dir/bench.mjs" --op "$op" --iterations "$iter" --out "$dir" "$@" ;;
    tributary) taskset -c "$CPU" "$transformer" bench --op "$op" --iterations "$iter" --out "$dir" "$@" ;;
  esac > "$dir.json" || die "$tool $op failed (run $run)"
  log "run $run: $tool $op: $(python3 -c 'import json,sys; print("%.2f images/s" % json.load(sys.stdin)["images_per_sec"])' < "$dir.json")"
}

rm -rf "$OUT"
for run in $(seq 1 "$RUNS"); do
  # Alternate which tool goes first, so neither always gets the cooler (or warmer) core.
  if [ $((run % 2)) -eq 1 ]; then tools=(sharp tributary); else tools=(tributary sharp); fi
  for tool in "${tools[@]}"; do measure "$run" "$tool" sharp-jpeg "$ITER_JPEG" "${jpeg_files[@]}"; done
  for tool in "${tools[@]}"; do measure "$run" "$tool" tributary-webp "$ITER_WEBP" "${webp_files[@]}"; done
done

versions=$(cd "$sharp_dir" && node -p 'const v = require("sharp").versions; `sharp ${v.sharp}, libvips ${v.vips}`')
python3 bench/images/summarize.py "$OUT" "$IMAGES" "$versions"
