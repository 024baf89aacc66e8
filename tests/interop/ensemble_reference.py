#!/usr/bin/env python3
"""Reference for `terrafill eval`'s ensemble scores: writes a prediction group (`members` with a
leading `member` dimension, `data` = their mean, `filled` = 1 everywhere, so every pixel is
scored) and a truth group with zarr-python, and prints the scores of them as JSON:
properscoring's `crps_ensemble`, the fair CRPS derived from it, spread/skill and the rank
histogram from numpy.

    ensemble_reference.py PRED.zarr TRUTH.zarr
"""
import json
import sys

import numpy as np
import properscoring as ps
import zarr


def write(path, arrays):
    g = zarr.open_group(path, mode="w", zarr_format=3)
    for name, a in arrays.items():
        dims = ["band", "y", "x"] if a.ndim == 3 else ["member", "band", "y", "x"]
        z = g.create_array(name, shape=a.shape, chunks=a.shape[:-2] + (16, 16), dtype=a.dtype,
                           dimension_names=dims)
        z[:] = a


def main(pred, truth):
    rng = np.random.default_rng(11)
    k, shape = 5, (2, 24, 20)
    y = rng.normal(100.0, 20.0, shape).astype(np.float32)
    centre = y + rng.normal(0.0, 6.0, shape)
    members = (centre[None] + rng.normal(0.0, 4.0, (k,) + shape)).astype(np.float32)
    write(pred, {"members": members, "data": members.mean(axis=0, dtype=np.float64).astype(np.float32),
                 "filled": np.ones(shape, dtype=np.uint8)})
    write(truth, {"data": y})
    x = np.moveaxis(members.astype(np.float64), 0, -1)
    y64 = y.astype(np.float64)
    crps = ps.crps_ensemble(y64, x)
    # properscoring: E|X - y| - E|X - X'|/2 with E|X - X'| over K² pairs; the fair estimator
    # takes it over the K(K - 1) distinct pairs.
    pair = np.abs(x[..., :, None] - x[..., None, :]).sum(axis=(-1, -2))
    fair = np.abs(x - y64[..., None]).mean(axis=-1) - pair / (2 * k * (k - 1))
    mean = x.mean(axis=-1)
    rmse = np.sqrt(np.mean((mean - y64) ** 2))
    var = x.var(axis=-1, ddof=1)
    ranks = (x < y64[..., None]).sum(axis=-1)
    print(json.dumps({
        "members": k,
        "pixels": int(y.size),
        "crps_ensemble": float(np.mean(crps)),
        "crps_fair": float(np.mean(fair)),
        "spread_skill": float(np.sqrt((k + 1) / k * np.mean(var)) / rmse),
        "rank_histogram": np.bincount(ranks.ravel(), minlength=k + 1).tolist(),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:3])
