#!/usr/bin/env python3
"""Interop check: zarr-python and xarray read a terrafill output like its input.

    check_output.py INPUT.zarr OUTPUT.zarr

Fails (non-zero exit) unless: xarray opens the output with the input's dimension names and group
attributes plus `terrafill` provenance; zarr-python reads `data` (float32, same shape), observed
pixels equal the input bit for bit, every gap is filled and flagged in `filled`.
"""
import sys

import numpy as np
import xarray as xr
import zarr

inp, out = sys.argv[1], sys.argv[2]
src = zarr.open_group(inp, mode="r")
dst = zarr.open_group(out, mode="r")
a = np.asarray(src["data"][...])
b = np.asarray(dst["data"][...])
f = np.asarray(dst["filled"][...])
assert b.dtype == np.float32 and b.shape == a.shape, (b.dtype, b.shape, a.shape)
obs = np.isfinite(a)
assert np.array_equal(a[obs].view(np.uint32), b[obs].view(np.uint32)), "observed pixels changed"
assert np.isfinite(b[~obs]).all(), "gaps left unfilled"
assert (f[~obs] == 1).all() and (f[obs] == 0).all(), "filled flags wrong"

ds_in = xr.open_zarr(inp, consolidated=False)
ds = xr.open_zarr(out, consolidated=False)
assert ds["data"].dims == ds_in["data"].dims, (ds["data"].dims, ds_in["data"].dims)
assert ds["filled"].dims == ds_in["data"].dims
for k, v in ds_in.attrs.items():
    assert ds.attrs[k] == v, (k, ds.attrs.get(k), v)
prov = ds.attrs["terrafill"]
for key in ("version", "job_id", "method", "tile", "overlap", "seed"):
    assert key in prov, key
print("interop ok:", dict(ds.sizes), prov["method"], prov["job_id"])
