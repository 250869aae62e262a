#!/usr/bin/env python3
"""Summary of bench/images.sh as Markdown for docs/BENCHMARKS.md.

    python3 summarize.py OUT_DIR IMAGES_DIR [VERSIONS]

OUT_DIR holds run<N>/<tool>-<op>.json (one JSON line of bench.mjs or `transformer bench`) and the
outputs they list. Throughput is the median over runs (robust to one disturbed run); bytes and
SSIM come from the last run's outputs, SSIM against a Lanczos reference of the original (ssim.py).
"""
import glob
import json
import os
import statistics
import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ssim import ssim  # noqa: E402

OPS = ("sharp-jpeg", "tributary-webp")
TOOLS = ("sharp", "tributary")


def original_of(output, images):
    # <basename>.<variant>.<ext> -> <images>/<basename>.jpg
    return os.path.join(images, os.path.basename(output).rsplit(".", 2)[0] + ".jpg")


def main(out, images, versions=""):
    results = {}  # (tool, op) -> [result per run], in run order
    runs = sorted(glob.glob(os.path.join(out, "run*")), key=lambda d: int(d.rsplit("run", 1)[1]))
    for run in runs:
        for path in sorted(glob.glob(os.path.join(run, "*.json"))):
            with open(path) as f:
                r = json.loads(f.read().strip().splitlines()[-1])
            results.setdefault((r["tool"], r["op"]), []).append(r)

    rows, details = [], []
    for op in OPS:
        base = None
        for tool in TOOLS:
            rs = results.get((tool, op))
            if not rs:
                continue
            rates = [r["images_per_sec"] for r in rs]
            median = statistics.median(rates)
            base = median if tool == "sharp" else base
            outputs = rs[-1]["outputs"]
            scores = [ssim(original_of(o["path"], images), o["path"]) for o in outputs]
            ratio = f"{median / base:.2f}×" if base else "–"
            rows.append(f"| {op} | {tool} | {median:.2f} ({min(rates):.2f}–{max(rates):.2f}) | {ratio} "
                        f"| {sum(o['bytes'] for o in outputs):,} | {statistics.mean(scores):.4f} |")
            details += [f"| {op} | {tool} | {os.path.basename(o['path'])} | {o['width']}×{o['height']} "
                        f"| {o['bytes']:,} | {s:.4f} |" for o, s in zip(outputs, scores)]

    with open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    print(f"Machine: {len(os.sched_getaffinity(0))} cores (nproc), {cpu}; {versions}; "
          f"{len(runs)} runs, each tool pinned to one core, single-threaded.\n")
    print("| op | tool | images/s per core, median (min–max) | vs sharp | output bytes | mean SSIM |")
    print("|---|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    print("\n| op | tool | output | size | bytes | SSIM |")
    print("|---|---|---|---|---:|---:|")
    print("\n".join(details))


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: summarize.py OUT_DIR IMAGES_DIR [VERSIONS]")
    main(*sys.argv[1:])
