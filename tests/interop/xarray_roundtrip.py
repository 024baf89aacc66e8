#!/usr/bin/env python3
"""Round-trip of an xarray-written scene through `terrafill fill`.

    xarray_roundtrip.py write INPUT.zarr      an int16 (time, lat, lon) variable `t2m` with
                                              _FillValue -9999, coordinates and CRS attributes,
                                              as xarray writes it (Zarr v2)
    xarray_roundtrip.py check INPUT.zarr OUTPUT.zarr

`check` fails unless xarray opens the output, its `data` is float32 over the input's dimensions
with every gap filled, no `_FillValue` of the input's integer encoding is left on it, the
coordinates (time, lat, lon) come back equal to the input's, and the group attributes survive.
"""
import sys

import numpy as np
import pandas as pd
import xarray as xr


def write(path):
    rng = np.random.default_rng(3)
    t, h, w = 3, 40, 50
    lat = np.linspace(50.0, 48.05, h)
    lon = np.linspace(-4.0, -1.55, w)
    field = 2800 + 40 * np.sin(lat[:, None] * 3) * np.cos(lon[None, :] * 2)
    values = np.stack([field + 5 * k + rng.normal(0, 1, (h, w)) for k in range(t)])
    values = np.round(values).astype(np.int16)
    values[:, 10:22, 15:30] = -9999  # a cloud in every date
    values[1, 30:35, :] = -9999  # and a stripe in one
    da = xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={"time": pd.date_range("2024-07-01", periods=t), "lat": lat, "lon": lon},
        attrs={"units": "K/10", "_FillValue": -9999},
        name="t2m",
    )
    ds = da.to_dataset()
    ds.attrs["crs"] = "EPSG:4326"
    ds.to_zarr(path, mode="w", zarr_format=2, consolidated=False)


def check(inp, out):
    ds_in = xr.open_zarr(inp, consolidated=False)
    ds = xr.open_zarr(out, consolidated=False)
    data = ds["data"]
    assert data.dtype == np.float32, data.dtype
    assert data.dims == ds_in["t2m"].dims, (data.dims, ds_in["t2m"].dims)
    assert "_FillValue" not in data.attrs, data.attrs
    assert data.attrs.get("units") == "K/10", data.attrs
    values = data.values
    assert np.isfinite(values).all(), "gaps left unfilled"
    observed = np.isfinite(ds_in["t2m"].values)
    assert np.array_equal(values[observed], ds_in["t2m"].values[observed].astype(np.float32))
    for name in ("time", "lat", "lon"):
        assert name in ds.coords, (name, list(ds.coords))
        np.testing.assert_array_equal(ds[name].values, ds_in[name].values)
    assert ds.attrs.get("crs") == "EPSG:4326", ds.attrs
    print("round trip ok:", dict(ds.sizes), list(ds.coords))


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3])
