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
  chunks (7, 64, 64) on world tiles in shards of :data:`SHARD_TILES` x
  :data:`SHARD_TILES` tiles from the store's corner (one object per shard with
  data: tens of millions of chunk objects world-wide become a few million), NaN
  where no data, ``spatial_ref``; written with :mod:`gnt_assets.core.zarr_regions`;
  :func:`tile_array` reads one tile.

A cluster is written as the whole shards its region touches (the write unit):
its pixels merged over what is stored there (new pixels where they have data,
the stored ones elsewhere, so other clusters' tiles in those shards are kept and
the order clusters are written in does not matter). Only the store's own
country-year partition writes it; two runs of it on one machine take turns on
the store (``local_lock``), so neither rewrites a shard from a stale read.
"""

from __future__ import annotations

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import xarray as xr
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.atomic import local_lock
from gnt_assets.core.worldgrid import TILE_SIZE, WORLD, world_tile
from gnt_assets.core.zarr_regions import StoreLayout, ZarrLayoutError, create_store, open_store, store_exists, write_region

BANDS = ("blue", "green", "red", "nir", "swir1", "swir2", "thermal")
VARIABLE = "reflectance"
SHARD_TILES = 8  # shards of 8 x 8 tiles (512 x 512 px, 7.3 MB of float32 before compression)


def region_path(root: UPath, country: str, year: str | int) -> UPath:
    return root / "mining" / "regions" / country / f"{year}.zarr"


def _dataset(geobox: GeoBox, data) -> xr.Dataset:
    coords = geobox.coordinates
    return _labelled(coords["latitude"].values, coords["longitude"].values, data)


def _labelled(latitude: np.ndarray, longitude: np.ndarray, data) -> xr.Dataset:
    return xr.Dataset(
        {
            VARIABLE: (
                ("band", "latitude", "longitude"),
                data,
                {"units": "1 (reflectance); K (thermal)", "long_name": "Landsat C02 T1 L2 annual composite"},
            )
        },
        coords={"band": list(BANDS), "latitude": latitude, "longitude": longitude},
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
    shards = (len(BANDS), TILE_SIZE * SHARD_TILES, TILE_SIZE * SHARD_TILES)
    template = _dataset(geobox, da.full(shape, np.nan, dtype="float32", chunks=shape))
    create_store(path, template, encoding={VARIABLE: {"chunks": chunks, "shards": shards, "_FillValue": np.float32("nan")}})


def write_cluster(path: UPath, geobox: GeoBox, pixels: np.ndarray) -> dict[str, slice]:
    """Merge one cluster's (7, H, W) pixels on a tile-aligned GeoBox into the store; returns the region
    written: the whole write units (shards, or chunks in a store made unsharded) the cluster touches."""
    if pixels.shape != (len(BANDS), *geobox.shape):
        raise ZarrLayoutError(f"{path}: pixels {pixels.shape} do not match region {geobox.shape} x {len(BANDS)} bands")
    with local_lock(path):
        store = open_store(path, dask=False)
        col, row = (round(v) for v in ~store.odc.geobox.affine @ (geobox.affine.c, geobox.affine.f))
        height, width = store.sizes["latitude"], store.sizes["longitude"]
        if col < 0 or row < 0 or row + geobox.shape.y > height or col + geobox.shape.x > width:
            raise ZarrLayoutError(f"{path}: cluster region at ({col}, {row}) px lies outside the store")
        unit = StoreLayout.read(path).units[VARIABLE]
        rows = _whole_units(row, row + geobox.shape.y, unit["latitude"], height)
        cols = _whole_units(col, col + geobox.shape.x, unit["longitude"], width)
        window = {"latitude": rows, "longitude": cols}  # by position: no label look-up per pixel
        merged = store[VARIABLE].isel(window).transpose("band", "latitude", "longitude").values.astype("float32")
        inside = merged[:, row - rows.start : row - rows.start + geobox.shape.y, col - cols.start : col - cols.start + geobox.shape.x]
        np.copyto(inside, pixels, where=~np.isnan(pixels))
        # labelled with the store's own coordinates (the window may run past the cluster's, even past 180 degrees)
        return write_region(path, _labelled(store["latitude"].values[rows], store["longitude"].values[cols], merged))


def _whole_units(start: int, stop: int, unit: int, size: int) -> slice:
    """[start, stop) grown to whole write units of ``unit`` px (the last one ends at the store's edge)."""
    return slice(start // unit * unit, min(-(-stop // unit) * unit, size))


def tile_chunks_present(path: UPath, tiles) -> dict[tuple[int, int], bool]:
    """Whether the stored object (shard, or chunk in a store made unsharded) under each world tile of the
    region is written (one listing of the store)."""
    geobox = open_store(path).odc.geobox
    unit = StoreLayout.read(path).units[VARIABLE]
    root = path.path.rstrip("/")
    prefix = f"{root}/{VARIABLE}/c/"
    stored = {p[len(prefix) :] for p in path.fs.find(prefix)} if path.fs.exists(prefix) else set()
    present = {}
    for ix, iy in tiles:
        corner = world_tile(int(ix), int(iy)).affine
        col, row = (round(v) for v in ~geobox.affine @ (corner.c, corner.f))
        inside = 0 <= col < geobox.shape.x and 0 <= row < geobox.shape.y
        present[(int(ix), int(iy))] = inside and f"0/{row // unit['latitude']}/{col // unit['longitude']}" in stored
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
