#!/usr/bin/env python3
"""SSIM of a resized output against a reference made from its original, with ffmpeg's ssim filter.

    python3 ssim.py ORIGINAL OUTPUT      # prints the "All" SSIM, 1.0 = identical
    from ssim import ssim; ssim(original, output) -> float

The reference is the original, upright (the ffmpeg CLI applies JPEG EXIF orientation on input by
default, flips included: checked for all 8 orientations against sharp's rotate() on ffmpeg 5.1),
Lanczos-scaled to the output's exact size. Both are compared in 8-bit RGB (gbrp): JPEG
(full-range) and WebP (limited-range) YUV are each converted by their own range, so no choice of
colour matrix or range favours either encoder.
Python 3 stdlib + ffmpeg/ffprobe only.
"""
import re
import subprocess
import sys


def dimensions(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
         "-of", "csv=p=0:s=x", path], check=True, capture_output=True, text=True).stdout
    w, h = out.strip().split("x")[:2]
    return int(w), int(h)


def ssim(original, output):
    w, h = dimensions(output)
    # accurate_rnd/full_chroma_int: the YUV->RGB conversions themselves should not cost SSIM.
    graph = (f"sws_flags=lanczos+accurate_rnd+full_chroma_int;"
             f"[0:v]format=gbrp,scale={w}:{h}:flags=lanczos+accurate_rnd[ref];"
             f"[1:v]format=gbrp[out];[out][ref]ssim")
    res = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", original, "-i", output,
                          "-filter_complex", graph, "-f", "null", "-"], capture_output=True, text=True)
    m = re.search(r"SSIM .*All:([0-9.]+)", res.stderr)
    if res.returncode != 0 or not m:
        raise RuntimeError(f"ffmpeg ssim failed for {output}: {res.stderr[-2000:]}")
    return float(m.group(1))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: ssim.py ORIGINAL OUTPUT")
    print(f"{ssim(sys.argv[1], sys.argv[2]):.6f}")
