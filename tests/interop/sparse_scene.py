#!/usr/bin/env python3
"""A sparse scene, as zarr-python stores one: chunks equal to the fill value are not stored.

    sparse_scene.py write SCENE.zarr

Writes a group with two float32 `[band, y, x]` arrays of 2 × 768 × 1024, 128² chunks, of which
only a few chunks are stored (smooth values with NaN blobs, one crossing chunk borders, and one
chunk without gaps):
- `zeros`: fill value 0, so every chunk that is not stored reads as observed zeros;
- `holes`: fill value NaN, so every chunk that is not stored is a gap.
Prints how many chunks each array stores.
"""
import sys

import numpy as np
import zarr


def write(path):
    rng = np.random.default_rng(11)
    bands, h, w = 2, 768, 1024
    y, x = np.mgrid[0:h, 0:w].astype("float32")
    smooth = np.stack([50 + 20 * np.sin(y / 37 + b) * np.cos(x / 29 - b) for b in range(bands)])
    root = zarr.open_group(path, mode="w", zarr_format=3)
    for name, fill in (("zeros", 0.0), ("holes", float("nan"))):
        values = np.full((bands, h, w), fill, dtype="float32")
        # Stored regions: a 2×2 block of chunks with a blob across its inner corner, a chunk with
        # a small blob in one band only, and a chunk without gaps.
        for (y0, y1, x0, x1) in ((128, 384, 256, 512), (512, 640, 768, 896), (0, 128, 0, 128)):
            values[:, y0:y1, x0:x1] = smooth[:, y0:y1, x0:x1]
        yy, xx = np.ogrid[0:h, 0:w]
        values[:, (yy - 256) ** 2 + (xx - 384) ** 2 < 30 ** 2] = np.nan
        values[1, (yy - 570) ** 2 + (xx - 800) ** 2 < 9 ** 2] = np.nan
        values[0, 700, 5] = np.nan if fill == 0.0 else values[0, 700, 5]
        arr = root.create_array(name, shape=values.shape, dtype="float32", chunks=(1, 128, 128),
                                fill_value=fill, dimension_names=["band", "y", "x"])
        arr[...] = values
        print(name, arr.nchunks_initialized)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "write":
        sys.exit(__doc__)
    write(sys.argv[2])
