"""Square-grid results as a georeferenced raster: one pixel per cell of the equal-area grid.

The long table (cell_id, band, method, value, valid_fraction) becomes an xarray dataset on
the grid's GeoBox (EPSG:6933, EASE-Grid 2.0, for the grids of ``grids.yaml``) with CF
attributes and ``spatial_ref``, so ``xr.open_zarr(...).odc.geobox`` places it, and one
Cloud-Optimized GeoTIFF per method and band for GIS tools. The zarr store is written in
format 2 for the same reason as the tiles store (see ``tiling``): the GDAL builds at hand
refuse zarr-python's format 3 arrays.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import odc.geo.xr  # xr_zeros, xr_coords; importing it registers the .odc accessor
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.io import MemoryFile
from upath import UPath

from gnt_assets.core.atomic import atomic_directory, atomic_write_bytes, is_local, resolve_directory
from gnt_assets.core.zarr_regions import with_exact_transform


def _indices(table: gpd.GeoDataFrame) -> tuple[np.ndarray, np.ndarray]:
    parsed = table.cell_id.str.extract(r"^C[^_]+_(\d+)_(\d+)$").astype(int)
    return parsed[0].to_numpy(), parsed[1].to_numpy()


def square_geobox(table: gpd.GeoDataFrame) -> GeoBox:
    """The pixel grid the cells form: cell (i, j) is pixel (row j - j0, column i - i0), the
    origin and size read from the cells' own corners (exact, as the grid computed them)."""
    i, j = _indices(table)
    bounds = table.geometry.bounds.to_numpy()
    size = float(bounds[0, 2] - bounds[0, 0])
    left = float(bounds[np.argmin(i), 0])
    top = float(bounds[np.argmin(j), 3])
    return GeoBox((int(j.max() - j.min()) + 1, int(i.max() - i.min()) + 1), Affine(size, 0, left, 0, -size, top), table.crs)


def square_dataset(table: gpd.GeoDataFrame) -> xr.Dataset:
    """``{method}_b{band}`` and ``{method}_b{band}_valid_fraction`` (y, x) float64, NaN where a cell has no value."""
    table = table.reset_index(drop=True)
    geobox = square_geobox(table)
    i, j = _indices(table)
    rows, cols = j - j.min(), i - i.min()
    coords = odc.geo.xr.xr_coords(geobox)
    ydim, xdim = geobox.dimensions
    variables = {}
    for (method, band), part in table.groupby(["method", "band"], sort=True):
        position = part.index.to_numpy()
        for suffix, column, attrs in (("", "value", {"long_name": f"band {band} {method} per cell", "cell_methods": f"area: {method}"}),
                                      ("_valid_fraction", "valid_fraction", {"long_name": f"valid fraction of each cell (band {band})", "units": "1"})):
            grid = np.full(geobox.shape, np.nan)
            grid[rows[position], cols[position]] = part[column].to_numpy(float)
            variables[f"{method}_b{band}{suffix}"] = xr.DataArray(grid, dims=(ydim, xdim), attrs={**attrs, "grid_mapping": "spatial_ref"})
    dataset = xr.Dataset(variables, coords=coords, attrs={"Conventions": "CF-1.8"})
    return with_exact_transform(dataset)


def write_square_zarr(table: gpd.GeoDataFrame, path: UPath) -> UPath:
    """The square-grid result as a dataset on the grid's GeoBox, published whole at ``path``;
    returns where to read it (on object stores the version its pointer names)."""
    dataset = square_dataset(table)
    with atomic_directory(path) as target:
        if is_local(target):
            dataset.to_zarr(target.path, mode="w-", consolidated=False, zarr_format=2)
        else:  # the storage options (endpoint, credentials) travel with the URL
            dataset.to_zarr(str(target), mode="w-", consolidated=False, zarr_format=2, storage_options=dict(target.storage_options) or None)
    return resolve_directory(path)


def write_square_cogs(table: gpd.GeoDataFrame, folder: UPath) -> list[UPath]:
    """One two-band COG per method and band in ``folder`` (band 1 the value, band 2 the valid
    fraction; NaN nodata), each written whole; COGs of methods no longer produced are removed."""
    dataset = square_dataset(table)
    geobox = dataset.odc.geobox
    written = []
    for name in [n for n in dataset.data_vars if not n.endswith("_valid_fraction")]:
        profile = {"driver": "COG", "width": geobox.shape.x, "height": geobox.shape.y, "count": 2, "dtype": "float64",
                   "crs": geobox.crs.to_wkt(), "transform": geobox.affine, "nodata": np.nan, "compress": "deflate"}
        with MemoryFile() as memory:
            with memory.open(**profile) as dst:
                dst.write(np.stack([dataset[name].values, dataset[f"{name}_valid_fraction"].values]))
                dst.descriptions = (dataset[name].attrs["long_name"], "valid fraction")
            data = memory.read()
        target = folder / f"{name}.tif"
        atomic_write_bytes(target, data)
        written.append(target)
    if folder.exists():
        for stale in set(folder.glob("*.tif")) - set(written):
            stale.unlink()
    return written
