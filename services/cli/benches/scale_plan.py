#!/usr/bin/env python3
"""Benchmark (not a test): a continental-size, mostly clean job through the real distributed
pipeline — `terrafill submit` (the coordinator), one `terrafill stitcher` and one
`terrafill worker` as separate processes on RabbitMQ — as the plan grows 10×.

Each scene is sparse, as zarr-python stores a large mostly-clean raster: a float32 `[y, x]` array
with fill value 0 whose chunks are stored only where there is something other than 0, here
`--gappy` chunks with a NaN blob each. The grid is `--tile 64 --overlap 16` (stride 48), so a
scene of side S has about (S / 48)² tiles. Per scene it prints: tiles in the grid, dirty tiles,
planning time (submit's start to its "job planned" log line: the scan, the output's creation
and the staged plan), total time, tasks/s through RabbitMQ after planning, output chunks written, and the peak RSS of each process.

    python3 services/cli/benches/scale_plan.py target/release/terrafill \
        [--broker amqp://guest:guest@127.0.0.1:5672/%2f] [--work /tmp/scale]

Needs numpy and zarr>=3, a RabbitMQ broker, /usr/bin/time.
"""
import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CHUNK = 512
TILE, OVERLAP = 64, 16


def make(path, side, gappy, seed):
    """A sparse scene of side `side` with `gappy` stored chunks, each holding a NaN blob."""
    import zarr

    if (path / "zarr.json").exists():
        return
    rng = np.random.default_rng(seed)
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = root.create_array("data", shape=(side, side), dtype="float32", chunks=(CHUNK, CHUNK),
                            fill_value=0.0, dimension_names=["y", "x"])
    per_row = side // CHUNK
    yy, xx = np.ogrid[0:CHUNK, 0:CHUNK]
    for flat in rng.choice(per_row * per_row, size=gappy, replace=False):
        row, col = divmod(int(flat), per_row)
        block = (50 + 10 * np.sin(yy / 17.0) * np.cos(xx / 23.0)).astype("float32")
        block = np.broadcast_to(block, (CHUNK, CHUNK)).copy()
        block[(yy - CHUNK // 2) ** 2 + (xx - CHUNK // 2) ** 2 < 60 ** 2] = np.nan
        arr[row * CHUNK:(row + 1) * CHUNK, col * CHUNK:(col + 1) * CHUNK] = block


def rss_mb(stderr_text):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr_text)
    return int(m.group(1)) / 1024 if m else float("nan")


def service(exe, kind, broker, log):
    return subprocess.Popen(["/usr/bin/time", "-v", exe, kind, "--broker", broker],
                            stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def run(exe, broker, scene, work):
    out = work / "out.zarr"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(str(out) + ".staging", ignore_errors=True)
    logs = {k: work / f"{k}.log" for k in ("stitcher", "worker", "submit")}
    stitcher = service(exe, "stitcher", broker, logs["stitcher"])
    worker = service(exe, "worker", broker, logs["worker"])
    time.sleep(1.0)
    env = dict(os.environ, RUST_LOG="coordinator=info")
    t0 = time.perf_counter()
    submit = subprocess.Popen(
        ["/usr/bin/time", "-v", exe, "submit", str(scene), str(out), "--broker", broker,
         "--method", "idw", "--tile", str(TILE), "--overlap", str(OVERLAP)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    planned = None
    err_lines = []
    for line in submit.stderr:
        err_lines.append(line)
        if planned is None and "job planned" in line:
            planned = time.perf_counter() - t0
    submit.wait()
    total = time.perf_counter() - t0
    for p in (stitcher, worker):
        # Stop the service itself (the child of /usr/bin/time), which then reports its peak RSS.
        children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True)
        for pid in children.stdout.split():
            os.kill(int(pid), signal.SIGTERM)
    for p in (stitcher, worker):
        p.wait(timeout=60)
    if submit.returncode != 0:
        sys.exit(f"submit failed:\n{''.join(err_lines[-20:])}")
    published = [json.loads(l) for l in err_lines if "job published" in l]
    fields = published[0]["fields"] if published else {}
    chunks = sum(1 for _ in (out / "data" / "c").rglob("*") if _.is_file())
    return {
        "tiles": fields.get("tiles"),
        "dirty": fields.get("dirty"),
        "plan_s": planned,
        "total_s": total,
        "tasks_per_s": (fields.get("dirty") or 0) / max(total - (planned or 0), 1e-9),
        "chunks_written": chunks,
        "rss_submit": rss_mb("".join(err_lines)),
        "rss_stitcher": rss_mb(logs["stitcher"].read_text()),
        "rss_worker": rss_mb(logs["worker"].read_text()),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("terrafill")
    ap.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    ap.add_argument("--work", default="/tmp/terrafill-scale")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    stride = TILE - OVERLAP
    # (side, gappy chunks): 100 k tiles, 1 M tiles with the same gaps, 1 M tiles with 10× the gaps.
    cases = [(316 * stride // CHUNK * CHUNK, 8), (1000 * stride // CHUNK * CHUNK, 8),
             (1000 * stride // CHUNK * CHUNK, 80)]
    print("| tiles | dirty tiles | gappy chunks | plan s | total s | tasks/s | chunks written "
          "| RSS submit MB | RSS stitcher MB | RSS worker MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for side, gappy in cases:
        scene = work / f"scene-{side}-{gappy}.zarr"
        make(scene, side, gappy, seed=side + gappy)
        r = run(args.terrafill, args.broker, scene, work)
        print(f"| {r['tiles']} | {r['dirty']} | {gappy} | {r['plan_s']:.2f} | {r['total_s']:.2f} "
              f"| {r['tasks_per_s']:.0f} | {r['chunks_written']} | {r['rss_submit']:.0f} "
              f"| {r['rss_stitcher']:.0f} | {r['rss_worker']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
