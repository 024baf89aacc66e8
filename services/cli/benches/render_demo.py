#!/usr/bin/env python3
"""Render the demo's truth, gapped input and fills side by side as one PNG (RGB, 2-98 % stretch
of the truth), and print each fill's value range against the truth's.

    python3 services/cli/benches/render_demo.py assets/demo/landsat7_crop.zarr terrafill-demo out.png

Needs numpy, zarr>=3 and matplotlib.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import zarr  # noqa: E402


def rgb(a, lo, hi):
    x = np.clip((np.moveaxis(a[:3], 0, -1) - lo) / (hi - lo), 0, 1)  # lo, hi: per band
    return np.nan_to_num(x, nan=1.0)


def main(truth_path, demo_dir, out):
    truth = zarr.open_group(truth_path, mode="r")["data"][:].astype(np.float32)
    panels = [("truth", truth), ("input (gaps white)", zarr.open_group(f"{demo_dir}/input.zarr", mode="r")["data"][:])]
    for name in ("idw", "diffusion"):
        try:
            panels.append((name, zarr.open_group(f"{demo_dir}/filled-{name}.zarr", mode="r")["data"][:]))
        except Exception as e:  # a method the demo did not run
            print(f"skipping {name}: {e}", file=sys.stderr)
    lo = np.nanpercentile(truth, 2, axis=(1, 2))
    hi = np.nanpercentile(truth, 98, axis=(1, 2))
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.3))
    for ax, (name, a) in zip(axes, panels):
        ax.imshow(rgb(a, lo, hi))
        ax.set_title(name)
        ax.axis("off")
        if name not in ("truth", "input (gaps white)"):
            print(f"{name}: range {np.nanmin(a):.1f}..{np.nanmax(a):.1f} "
                  f"(truth {np.nanmin(truth):.1f}..{np.nanmax(truth):.1f})")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
