"""The square-grid zarr is published whole on an object store: a rewrite goes to a new version that
the pointer then names, and readers (xarray on the returned path, the STAC description) see one whole version."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr

from gnt_assets.core.atomic import pointer_path
from gnt_assets.core.stac_catalog import describe_zarr
from gnt_assets.rasters.square_raster import write_square_zarr


def table(value: float) -> gpd.GeoDataFrame:
    cells = [f"Csq_{i}_{j}" for j in range(3) for i in range(4)]
    return gpd.GeoDataFrame(
        {"cell_id": cells, "method": "mean", "band": 1, "value": np.full(len(cells), value), "valid_fraction": 1.0},
        geometry=[shapely.box(0, 0, 1, 1)] * len(cells), crs="EPSG:3857",
    )


def test_square_zarr_rewrite_on_s3_publishes_a_new_version(s3_root, s3_endpoint):
    path = s3_root / "resampled" / "square_5km" / "dem.zarr"
    first = write_square_zarr(table(1.0), path)
    second = write_square_zarr(table(2.0), path)
    assert first != second and second.name.startswith("dem.zarr.v-") and pointer_path(path).exists()
    options = s3_endpoint.storage_options()
    values = xr.open_zarr(str(second), consolidated=False, storage_options=options)["mean_b1"].values
    assert values.shape == (3, 4) and np.all(values == 2.0)
    assert not first.fs.exists(first.path)  # the old version went only after the pointer named the new one
    assert describe_zarr(path, storage_options=options).asset["href"] == second  # the logical path resolves
