"""Helpers shared by the Python benchmarks in this folder."""
import re
import subprocess
import sys
import time


def timed(cmd):
    """Runs `cmd` under /usr/bin/time -v; returns (wall seconds, peak RSS in MB). Exits on failure."""
    t0 = time.perf_counter()
    run = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{run.stdout}\n{run.stderr}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", run.stderr)
    return seconds, int(rss.group(1)) / 1024 if rss else float("nan")
