#!/usr/bin/env python3
"""Benchmark (not a test): `terrafill fill --method identity` through the embedded pipeline against
what a Pangeo user would run on the same Zarr, in the same run: a zarr-python array copy and an
xarray/dask `map_overlap` identity (depth 16) written with `to_zarr`. Prints the median of
`--runs` wall times and peak RSS of each, with each time as a ratio to terrafill's.

    python3 services/cli/benches/identity_vs_pangeo.py target/release/terrafill [INPUT.zarr] \
        [--side 3072] [--runs 3]

Without INPUT, it writes a 3 × side × side float32 scene (smooth field with 1 % NaN, 256² chunks,
zstd) to the work folder. Needs numpy, zarr>=3, xarray, dask; /usr/bin/time for peak RSS.
"""
import argparse
import shutil
import statistics
import sys
from pathlib import Path

import numpy as np

from benchtools import timed


def make(path, side):
    import zarr

    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:side, 0:side].astype("float32") / side
    bands = [np.sin(6 * y + b) * np.cos(5 * x - b) * 100 + rng.normal(0, 1, (side, side))
             for b in range(3)]
    data = np.stack(bands).astype("float32")
    data[rng.random(data.shape) < 0.01] = np.nan
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = root.create_array("data", shape=data.shape, dtype="float32", chunks=(1, 256, 256),
                            fill_value=float("nan"), compressors=zarr.codecs.ZstdCodec(level=3),
                            dimension_names=["band", "y", "x"])
    arr[...] = data


def zarr_copy(src, dst):
    import zarr

    a = zarr.open_group(str(src), mode="r")["data"]
    root = zarr.open_group(str(dst), mode="w", zarr_format=3)
    out = root.create_array("data", shape=a.shape, dtype=a.dtype, chunks=a.chunks,
                            fill_value=a.fill_value, compressors=a.compressors,
                            dimension_names=a.metadata.dimension_names)
    out[...] = a[...]


def dask_overlap(src, dst):
    import xarray as xr

    ds = xr.open_zarr(str(src), consolidated=False, chunks={})
    data = ds["data"].data.map_overlap(lambda b: b, depth={0: 0, 1: 16, 2: 16}, boundary="none")
    out = ds.copy()
    out["data"] = (ds["data"].dims, data)
    out.to_zarr(str(dst), mode="w", zarr_format=3, consolidated=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("terrafill")
    ap.add_argument("input", nargs="?")
    ap.add_argument("--side", type=int, default=3072)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--workdir", default="target/identity-bench")
    a = ap.parse_args()
    work = Path(a.workdir)
    work.mkdir(parents=True, exist_ok=True)
    src = Path(a.input) if a.input else work / "input.zarr"
    if not a.input:
        make(src, a.side)
    methods = {
        "terrafill identity (embedded)": lambda out: [
            a.terrafill, "fill", str(src), str(out), "--method", "identity", "--tile", "256",
            "--overlap", "32", "--workers", str(a.workers), "--staging", f"{out}.staging"],
        "zarr-python copy": lambda out: [sys.executable, __file__, "_zarr_copy", str(src), str(out)],
        "xarray/dask map_overlap + to_zarr": lambda out: [
            sys.executable, __file__, "_dask", str(src), str(out)],
    }
    results = {name: [] for name in methods}
    for _ in range(a.runs):
        for name, cmd in methods.items():
            out = work / "out.zarr"
            shutil.rmtree(out, ignore_errors=True)
            shutil.rmtree(f"{out}.staging", ignore_errors=True)
            results[name].append(timed(cmd(out)))
    base = statistics.median(s for s, _ in results["terrafill identity (embedded)"])
    print("| tool | median seconds | ÷ terrafill's | peak RSS MB |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        sec = statistics.median(s for s, _ in runs)
        rss = max(r for _, r in runs)
        print(f"| {name} | {sec:.2f} | {sec / base:.2f} | {rss:.0f} |")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_zarr_copy":
        zarr_copy(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 4 and sys.argv[1] == "_dask":
        dask_overlap(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
