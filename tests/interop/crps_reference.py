#!/usr/bin/env python3
"""Reference for `terrafill eval`'s probabilistic scores: writes a prediction group (`data` = mean,
`spread` = σ, `filled` = 1 everywhere, so every pixel is scored) and a truth group with zarr-python, and prints properscoring's scores of them as JSON.

    crps_reference.py PRED.zarr TRUTH.zarr
"""
import json
import sys

import numpy as np
import properscoring as ps
import zarr


def write(path, arrays):
    g = zarr.open_group(path, mode="w", zarr_format=3)
    for name, a in arrays.items():
        z = g.create_array(name, shape=a.shape, chunks=(1, 16, 16), dtype=a.dtype,
                           dimension_names=["band", "y", "x"])
        z[:] = a


def main(pred, truth):
    rng = np.random.default_rng(7)
    shape = (2, 24, 20)
    y = rng.normal(100.0, 20.0, shape).astype(np.float32)
    mu = (y + rng.normal(0.0, 5.0, shape)).astype(np.float32)
    sigma = rng.uniform(0.5, 9.0, shape).astype(np.float32)
    sigma[0, :3] = 0.0  # observed pixels: zero spread scores as absolute error
    write(pred, {"data": mu, "spread": sigma, "filled": np.ones(shape, dtype=np.uint8)})
    write(truth, {"data": y})
    mu64, s64, y64 = (a.astype(np.float64) for a in (mu, sigma, y))
    with np.errstate(divide="ignore", invalid="ignore"):
        crps = ps.crps_gaussian(y64, mu=mu64, sig=s64)
    crps = np.where(s64 > 0, crps, np.abs(y64 - mu64))
    rmse = np.sqrt(np.mean((mu64 - y64) ** 2))
    print(json.dumps({
        "pixels": int(y.size),
        "crps_gaussian": float(np.mean(crps)),
        "spread_skill": float(np.sqrt(np.mean(s64 ** 2)) / rmse),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:3])
