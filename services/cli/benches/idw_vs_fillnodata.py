#!/usr/bin/env python3
"""Benchmark (not a test): `terrafill fill --method idw` against GDAL FillNodata
(`rasterio.fill.fillnodata`, band by band, Zarr read and write included) on a large scene with
cloud-like gaps, in the same run. Prints a Markdown table of wall time, peak RSS, NRMSE over the gap
pixels and pixels left unfilled, with each time as a ratio to FillNodata's.

    python3 services/cli/benches/idw_vs_fillnodata.py target/release/terrafill \
        [--scene assets/demo/landsat7_crop.zarr] [--side 3072] [--gap 0.30] [--distances 100]

The scene is the real image `--scene` (its `data` array, [band, y, x]) mirrored out to
side × side, so its texture is real; the gaps are ~30 % cloud-like blobs of tens to hundreds of
pixels (smoothed noise over a 256² grid, thresholded, scaled up). Both inputs are float32 Zarr v3,
256² chunks, zstd. `--distances` lists FillNodata's `max_search_distance` values to run (100 is its
default; pixels further than that from every observation stay unfilled there). Needs numpy, scipy,
zarr>=3, rasterio; /usr/bin/time for peak RSS.
"""
import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from benchtools import timed


def blobs(side, fraction, seed):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    grid = 256
    f = sum(wt * ndimage.gaussian_filter(rng.standard_normal((grid, grid)), sig, mode="wrap")
            for sig, wt in ((24, 1.0), (10, 0.5), (4, 0.25)))
    f = ndimage.zoom(f, side / grid, order=1)[:side, :side]
    return f > np.quantile(f, 1.0 - fraction)


def write(path, name, values):
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    arr = root.create_array(name, shape=values.shape, dtype="float32",
                            chunks=(1, 256, 256), fill_value=float("nan"),
                            compressors=zarr.codecs.ZstdCodec(level=3),
                            dimension_names=["band", "y", "x"])
    arr[...] = values


def make(scene, side, fraction, workdir):
    import zarr

    src = np.asarray(zarr.open_group(str(scene), mode="r")["data"][...], dtype="float32")
    if np.isnan(src).any():
        sys.exit(f"{scene}: the source must be fully observed (it is the truth)")
    pad_y, pad_x = max(side - src.shape[1], 0), max(side - src.shape[2], 0)
    truth = np.pad(src, ((0, 0), (0, pad_y), (0, pad_x)), mode="symmetric")[:, :side, :side]
    mask = blobs(side, fraction, seed=7)
    gapped = np.where(mask[None], np.nan, truth).astype("float32")
    write(workdir / "input.zarr", "data", gapped)
    return truth, mask


def fillnodata_run(inp, out, distance):
    """What a user would run: read each band from Zarr, FillNodata it, write it back."""
    import zarr
    from rasterio.fill import fillnodata

    src = zarr.open_group(str(inp), mode="r")["data"]
    bands = []
    for b in range(src.shape[0]):
        band = np.asarray(src[b], dtype="float32")
        valid = np.isfinite(band)
        bands.append(fillnodata(np.where(valid, band, 0.0), mask=valid.astype("uint8"),
                                max_search_distance=distance, smoothing_iterations=0))
    write(out, "data", np.stack(bands).astype("float32"))


def score(truth, mask, out, reached, common):
    """NRMSE (per-band RMSE / band std, averaged) over the gap pixels the method reached, and over
    `common` (the gap pixels every method reaches); pixels left unfilled; observed pixels changed."""
    import zarr

    pred = np.asarray(zarr.open_group(str(out), mode="r")["data"][...], dtype="float32")
    reached = reached & np.isfinite(pred).all(axis=0)

    def nrmse(select):
        return float(np.mean([np.sqrt(np.mean((pred[b][select] - truth[b][select]) ** 2))
                              / truth[b].std() for b in range(truth.shape[0])]))

    changed = int((pred[:, ~mask] != truth[:, ~mask]).sum())
    return nrmse(mask & reached), nrmse(common), int((mask & ~reached).sum()), changed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("terrafill")
    ap.add_argument("--scene", default="assets/demo/landsat7_crop.zarr")
    ap.add_argument("--side", type=int, default=3072)
    ap.add_argument("--gap", type=float, default=0.30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--distances", default="100")
    ap.add_argument("--workdir", default="target/idw-bench")
    a = ap.parse_args()
    work = Path(a.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    truth, mask = make(a.scene, a.side, a.gap, work)
    print(f"scene {truth.shape[0]}×{a.side}×{a.side} from {a.scene}, "
          f"{100 * mask.mean():.1f} % missing", file=sys.stderr)
    from scipy import ndimage

    # FillNodata leaves a pixel further than max_search_distance from every observation at its
    # input value; those pixels are left out of its score and counted as unfilled.
    distance = ndimage.distance_transform_edt(mask)
    distances = [int(x) for x in a.distances.split(",")]
    common = mask & (distance <= min(distances))
    rows = []
    out = work / "terrafill.zarr"
    sec, rss = timed([a.terrafill, "fill", str(work / "input.zarr"), str(out), "--method", "idw",
                      "--workers", str(a.workers)])
    rows.append(("terrafill idw", sec, rss, *score(truth, mask, out, mask, common)))
    for d in distances:
        out = work / f"fillnodata_{d}.zarr"
        sec, rss = timed([sys.executable, __file__, "_fillnodata", str(work / "input.zarr"),
                          str(out), str(d)])
        rows.append((f"FillNodata (max_search_distance {d})", sec, rss,
                     *score(truth, mask, out, distance <= d, common)))
    base = rows[1][1] if len(rows) > 1 else float("nan")
    print(f"| method | seconds | ÷ FillNodata's | peak RSS MB | NRMSE | NRMSE within "
          f"{min(distances)} px | unfilled | observed changed |")
    print("|---|---|---|---|---|---|---|---|")
    for name, sec, rss, nrmse, near, unfilled, changed in rows:
        print(f"| {name} | {sec:.2f} | {sec / base:.2f} | {rss:.0f} | {nrmse:.4f} | {near:.4f} "
              f"| {unfilled} | {changed} |")
    print(json.dumps({r[0]: dict(zip(("seconds", "rss_mb", "nrmse", "nrmse_common", "unfilled"), r[1:]))
                      for r in rows}), file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "_fillnodata":
        fillnodata_run(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
