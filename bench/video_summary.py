"""Summarizes `transformer bench --op video-hls` output (one JSON line on stdin)."""
import json
import os
import statistics
import sys

runs = json.load(sys.stdin)["runs"]
for r in runs:
    variants = ", ".join(r["variants"])
    print(f'{r["width"]}x{r["height"]} {r["duration_secs"]:.1f} s of video in {r["wall_secs"]:.2f} s: '
          f'{r["realtime_multiple"]:.2f}x real time ({variants})')
median = statistics.median(r["realtime_multiple"] for r in runs)
print(f"median: {median:.2f}x real time over {len(runs)} runs, {os.cpu_count()} cores")
