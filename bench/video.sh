#!/usr/bin/env bash
# Video-path benchmark: the transformer's real job (ffprobe with allowlists, then one ffmpeg run
# for the 1080p/720p/480p HLS ladder with aligned 4 s segments, plus the poster) on a generated
# 1080p30 clip with audio; reports the encode speed as a multiple of real time, per run and the
# median. FFmpeg's own `-preset veryfast` libx264 is the engine; the figure is what one
# transformer worker sustains with `ffmpeg_threads` (default 2).
#
#   bench/video.sh      # RUNS=3 SECONDS_OF_VIDEO=10
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source stack/env.sh
RUNS=${RUNS:-3} LENGTH=${SECONDS_OF_VIDEO:-10}
OUT=${BENCH_OUT:-$TRIBUTARY_STATE_DIR/bench-video}
rm -rf "$OUT" && mkdir -p "$OUT"
cargo build --release --locked -p tributary-processors --bin transformer >&2 || die "build failed"
# testsrc2 has motion and detail everywhere: harder to encode than a static pattern.
ffmpeg -nostdin -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1920x1080:rate=30:duration=$LENGTH" \
  -f lavfi -i "sine=frequency=440:duration=$LENGTH" \
  -c:v libx264 -preset fast -crf 18 -pix_fmt yuv420p -c:a aac -shortest "$OUT/clip-1080p.mp4"
"$CARGO_TARGET_DIR/release/transformer" bench --op video-hls --iterations "$RUNS" \
  --out "$OUT/hls" "$OUT/clip-1080p.mp4" | tee "$OUT/result.json" | python3 bench/video_summary.py
