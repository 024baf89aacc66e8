#!/usr/bin/env python3
"""Rebuilds the demo scene: a clean 3 x 256 x 256 crop of ../shared/data/landsat7_rgb.zarr.

    .venv/bin/python assets/demo/make_demo.py ../shared/data/landsat7_rgb.zarr assets/demo/landsat7_crop.zarr
"""
import sys

import numpy as np
import zarr

Y0, X0, SIZE = 224, 112, 256  # the first fully observed 256 x 256 window (no collar, no NaN)

src = zarr.open_group(sys.argv[1], mode="r")
data = np.asarray(src["data"][:, Y0:Y0 + SIZE, X0:X0 + SIZE], dtype="float32")
assert np.isfinite(data).all()
attrs = dict(src.attrs)
gt = list(attrs["geotransform"])
gt[0] += X0 * gt[1]
gt[3] += Y0 * gt[5]
attrs["geotransform"] = gt
attrs["notes"] = f"Crop [:, {Y0}:{Y0 + SIZE}, {X0}:{X0 + SIZE}] of landsat7_rgb.zarr; fully observed."
out = zarr.open_group(sys.argv[2], mode="w", zarr_format=3)
out.attrs.update(attrs)
arr = out.create_array("data", shape=data.shape, dtype="float32", chunks=(3, 128, 128), fill_value=float("nan"),
                       dimension_names=["band", "y", "x"])
arr[...] = data
print("wrote", sys.argv[2], data.shape)
