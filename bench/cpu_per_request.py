#!/usr/bin/env python3
"""Runs a command while accounting the CPU time each named process spends, and prints the
CPU microseconds per request of each (requests counted by the command's RESULT line:
`requests_per_sec=` x duration). Tells which process bounds a throughput benchmark on a
machine whose cores are shared by the whole stack.

usage: cpu_per_request.py NAME=PID[,PID...] [NAME=PID ...] -- COMMAND...
"""
import os
import re
import subprocess
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process and its reaped children, in seconds (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after the command name: utime is the 12th, stime the 13th (1-based after ')').
    return (int(fields[11]) + int(fields[12])) / TICKS


def main():
    split = sys.argv.index("--")
    groups = {}
    for arg in sys.argv[1:split]:
        name, pids = arg.split("=", 1)
        groups[name] = [int(p) for p in pids.split(",") if p]
    command = sys.argv[split + 1:]
    before = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
    self_before = os.times()
    started = time.monotonic()
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    wall = time.monotonic() - started
    self_after = os.times()
    after = {name: sum(cpu_seconds(p) for p in pids) for name, pids in groups.items()}
    sys.stdout.write(output)
    match = re.search(r"requests_per_sec=([0-9.]+)", output)
    if not match:
        return
    requests = float(match.group(1)) * wall
    # The load generator is this script's child: its CPU shows in our children's times.
    load = (self_after.children_user + self_after.children_system) - (
        self_before.children_user + self_before.children_system)
    parts = [f"{name}={(after[name] - before[name]) / requests * 1e6:.0f}" for name in groups]
    parts.append(f"load_generator={load / requests * 1e6:.0f}")
    total = sum(after[n] - before[n] for n in groups) + load
    print(f"CPU_US_PER_REQUEST {' '.join(parts)} total={total / requests * 1e6:.0f} "
          f"machine_cores_busy={total / wall:.2f}")


if __name__ == "__main__":
    main()
