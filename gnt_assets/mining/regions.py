"""Country-year zarr regions of Landsat composites on the world grid (contract with Mining II).

Contract:

* assets (group ``mining``): ``mine_polygons`` (unpartitioned GeoParquet, rejects
  beside it), ``mining_clusters`` (per country: clusters do not depend on the year),
  ``landsat_exports`` and ``landsat_regions`` (country x year);
* clusters table: ``cluster_id`` (sha256 hex), ``country`` (ISO3), ``geometry``
  (footprint, EPSG:4326), ``minx/miny/maxx/maxy`` (export region snapped to whole
  world tiles), ``tiles`` (list of [ix, iy]), ``mine_ids``;
* store ``{root}/mining/regions/{ISO3}/{year}.zarr``: ``reflectance`` float32
  (band, latitude, longitude), bands :data:`BANDS`, pixel centres of the world
  grid, extent = union of the country's cluster regions in whole 64 x 64 tiles,
  chunks (7, 64, 64) on world tiles, NaN where no data, ``spatial_ref``; written
  with :mod:`gnt_assets.core.zarr_regions`; :func:`tile_array` reads one tile.

A tile shared by two clusters is merged (new pixels where they have data, the
stored ones elsewhere), so the order clusters are written in does not matter.
"""

from __future__ import annotations

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import xarray as xr
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.worldgrid import TILE_SIZE, WORLD, world_tile
from gnt_assets.core.zarr_regions import ZarrLayoutError, create_store, open_store, store_exists, write_region

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2", "thermal")
VARIABLE = "reflectance"


def region_path(root: UPath, country: str, year: str | int) -> UPath:
    return root / "mining" / "regions" / country / f"{year}.zarr"


def _dataset(geobox: GeoBox, data) -> xr.Dataset:
    coords = geobox.coordinates
    return xr.Dataset(
        {
            VARIABLE: (
                ("band", "latitude", "longitude"),
                data,
                {"units": "1 (reflectance); K (thermal)", "long_name": "Landsat C02 T1 L2 annual composite"},
            )
        },
        coords={"band": list(BANDS), "latitude": coords["latitude"].values, "longitude": coords["longitude"].values},
    ).odc.assign_crs("EPSG:4326")


def country_geobox(region_bounds: list[tuple[float, float, float, float]]) -> GeoBox:
    """The union of tile-aligned cluster regions as one tile-aligned GeoBox."""
    minx = min(b[0] for b in region_bounds)
    miny = min(b[1] for b in region_bounds)
    maxx = max(b[2] for b in region_bounds)
    maxy = max(b[3] for b in region_bounds)
    col0, row0 = (round(v) for v in ~WORLD.affine @ (minx, maxy))
    col1, row1 = (round(v) for v in ~WORLD.affine @ (maxx, miny))
    if col0 % TILE_SIZE or row0 % TILE_SIZE or col1 % TILE_SIZE or row1 % TILE_SIZE:
        raise ZarrLayoutError(f"cluster regions {region_bounds} are not aligned to whole world tiles")
    return WORLD[row0:row1, col0:col1]


def create_region(path: UPath, geobox: GeoBox) -> None:
    """Metadata and coordinates only; chunks stay unwritten (NaN) until clusters fill them.

    The template is one lazy dask block (never computed), so a country-wide extent costs no graph.
    """
    import dask.array as da

    shape = (len(BANDS), *geobox.shape)
    chunks = (len(BANDS), TILE_SIZE, TILE_SIZE)
    template = _dataset(geobox, da.full(shape, np.nan, dtype="float32", chunks=shape))
    create_store(path, template, encoding={VARIABLE: {"chunks": chunks, "_FillValue": np.float32("nan")}})


def write_cluster(path: UPath, geobox: GeoBox, pixels: np.ndarray) -> dict[str, slice]:
    """Merge one cluster's (7, H, W) pixels on a tile-aligned GeoBox into the store."""
    if pixels.shape != (len(BANDS), *geobox.shape):
        raise ZarrLayoutError(f"{path}: pixels {pixels.shape} do not match region {geobox.shape} x {len(BANDS)} bands")
    store = open_store(path, dask=False)
    col, row = (round(v) for v in ~store.odc.geobox.affine @ (geobox.affine.c, geobox.affine.f))
    if col < 0 or row < 0 or row + geobox.shape.y > store.sizes["latitude"] or col + geobox.shape.x > store.sizes["longitude"]:
        raise ZarrLayoutError(f"{path}: cluster region at ({col}, {row}) px lies outside the store")
    window = {"latitude": slice(row, row + geobox.shape.y), "longitude": slice(col, col + geobox.shape.x)}  # by position:
    stored = store[VARIABLE].isel(window).transpose("band", "latitude", "longitude").values  # no label look-up per pixel
    merged = np.where(np.isnan(pixels), stored, pixels).astype("float32")
    return write_region(path, _dataset(geobox, merged))


def tile_chunks_present(path: UPath, tiles) -> dict[tuple[int, int], bool]:
    """Whether each world tile's chunk of the region is written (one listing of the store)."""
    geobox = open_store(path).odc.geobox
    root = path.path.rstrip("/")
    prefix = f"{root}/{VARIABLE}/c/"
    stored = {p[len(prefix) :] for p in path.fs.find(prefix)} if path.fs.exists(prefix) else set()
    present = {}
    for ix, iy in tiles:
        corner = world_tile(int(ix), int(iy)).affine
        col, row = (round(v) for v in ~geobox.affine @ (corner.c, corner.f))
        inside = 0 <= col < geobox.shape.x and 0 <= row < geobox.shape.y
        present[(int(ix), int(iy))] = inside and f"0/{row // TILE_SIZE}/{col // TILE_SIZE}" in stored
    return present


def tile_array(path: UPath, ix: int, iy: int) -> np.ndarray:
    """World tile ``(ix, iy)`` of a region store as float32 (7, 64, 64), NaN where no data."""
    if not store_exists(path):
        raise ZarrLayoutError(f"no zarr region at {path}")
    region = open_store(path, dask=False)[VARIABLE]  # one window: no task graph over every chunk of the store
    tile = world_tile(ix, iy)
    col, row = (round(v) for v in ~region.odc.geobox.affine @ (tile.affine.c, tile.affine.f))
    if col < 0 or row < 0 or col + TILE_SIZE > region.sizes["longitude"] or row + TILE_SIZE > region.sizes["latitude"]:
        raise ZarrLayoutError(f"world tile ({ix}, {iy}) is outside the region {path}")
    window = region.isel(latitude=slice(row, row + TILE_SIZE), longitude=slice(col, col + TILE_SIZE))
    return window.transpose("band", "latitude", "longitude").values.astype("float32")
