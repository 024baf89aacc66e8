#!/usr/bin/env python3
"""GeoTIFF round trip: rasterio writes, `terrafill import` + `fill` run, xarray reads.

    geotiff_roundtrip.py write SCENE.tif     a 3-band uint16 GeoTIFF (EPSG:32618, 30 m, GDAL
                                             no-data 0 over a cloud and a stripe)
    geotiff_roundtrip.py check SCENE.tif OUTPUT.zarr

`check` fails unless xarray opens the fill output with `data` over (band, y, x), x/y equal to
the pixel centres rasterio computes from the file's transform, the CRS and geotransform of the
file, observed pixels unchanged and every no-data pixel filled.
"""
import sys

import numpy as np
import rasterio
import xarray as xr
from rasterio.transform import from_origin


def write(path):
    h, w = 48, 64
    yy, xx = np.mgrid[0:h, 0:w]
    bands = np.stack([1000 + 200 * np.sin(xx / 9.0 + k) * np.cos(yy / 7.0) + 50 * k for k in range(3)])
    bands = np.round(bands).astype(np.uint16)
    bands[:, 12:25, 20:40] = 0  # cloud
    bands[:, :, 50] = 0  # stripe
    profile = dict(driver="GTiff", height=h, width=w, count=3, dtype="uint16", crs="EPSG:32618",
                   transform=from_origin(101985.0, 2826915.0, 30.0, 30.0), nodata=0)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)


def check(tif, out):
    with rasterio.open(tif) as src:
        raw = src.read().astype(np.float32)
        transform, crs, nodata = src.transform, src.crs, src.nodata
        h, w = src.height, src.width
    xs = np.array([(transform * (i + 0.5, 0.5))[0] for i in range(w)])
    ys = np.array([(transform * (0.5, j + 0.5))[1] for j in range(h)])
    ds = xr.open_zarr(out, consolidated=False)
    data = ds["data"]
    assert data.dims == ("band", "y", "x"), data.dims
    np.testing.assert_allclose(ds["x"].values, xs)
    np.testing.assert_allclose(ds["y"].values, ys)
    assert ds.attrs["crs"] == crs.to_string() == "EPSG:32618", ds.attrs.get("crs")
    np.testing.assert_allclose(ds.attrs["geotransform"], transform.to_gdal())
    v = data.values
    observed = raw != nodata
    assert np.array_equal(v[observed], raw[observed]), "observed pixels changed"
    assert np.isfinite(v).all(), "no-data left unfilled"
    assert (ds["filled"].values[~observed] == 1).all()
    print("geotiff round trip ok:", dict(ds.sizes), ds.attrs["crs"])


if __name__ == "__main__":
    if sys.argv[1] == "write":
        write(sys.argv[2])
    else:
        check(sys.argv[2], sys.argv[3])
