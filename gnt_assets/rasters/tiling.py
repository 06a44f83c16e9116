"""Tiles of a registered raster: a zarr copy with one chunk per tile, and per-tile statistics.

Why zarr: GeoTIFF blocks must be multiples of 16 pixels, so 1000-pixel tiles would
straddle blocks; a zarr array chunked (1, tile, tile) stores every tile as exactly one
object (``band_data/{band}.{row}.{col}``), so a reader fetches any tile with one GET / range read.
Each tile is read, written and counted by one task, so memory is bounded by the tile
size and tasks run in parallel on the compute resource's Dask cluster.

The store is an xarray dataset: ``band_data`` (band, y, x) with CF attributes and a
``spatial_ref`` grid mapping, so ``xr.open_zarr(...).odc.geobox`` is the source's GeoBox and
GDAL opens it (``ZARR:"tiles.zarr":/band_data``). It is written in zarr format 2: the GDAL
builds at hand (3.10.3 in the rasterio wheel, 3.6.2 in Debian 12) refuse the arrays
zarr-python writes in format 3 ("Unsupported codec: bytes"; 3.6 does not find them). GDAL
3.10 reads the CRS from the CF grid mapping; 3.6 reads the geotransform only (given GDAL's
own ``_CRS`` attribute it swaps the axes of projected CRSs, so none is written). The caller
builds the store aside and publishes it whole (``core.atomic.atomic_directory``), resumably: each
tile task records its statistics under ``_tile_progress/`` once its chunk is written, so a build
killed half-way redoes only the tiles without a record (``finished_tiles``); the records are
removed before the store is published.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import odc.geo.xr  # xr_zeros, xr_coords; importing it registers the .odc accessor
import rasterio
import zarr
from odc.geo.geobox import GeoBox
from rasterio.windows import Window
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text, is_local, located
from gnt_assets.core.rio import open_raster
from gnt_assets.core.zarr_regions import with_exact_transform
from gnt_assets.rasters.zonal import valid_mask

VARIABLE = "band_data"
PROGRESS = "_tile_progress"  # per-tile records of a build in progress (not part of the published store)
LAYOUT_VERSION = "1"  # bump when the store's layout changes: a build of an older layout is not resumed


@dataclass(frozen=True)
class TileTask:
    source: UPath  # with its storage options: it is opened on a Dask worker
    store: str
    storage_options: dict
    band: int
    row: int
    col: int
    tile_size: int
    nodata: float | None

    @property
    def tile_id(self) -> str:
        return f"b{self.band}_r{self.row:04d}_c{self.col:04d}"


def open_array(store: str, storage_options: dict, mode: str = "r+"):
    """The store's ``band_data`` array, for a tile task to write or a reader to take whole tiles from."""
    if "://" in store:
        store = zarr.storage.FsspecStore.from_url(store, storage_options=storage_options or None, read_only=mode == "r")
    return zarr.open_array(store=store, path=VARIABLE, mode=mode, zarr_format=2)


def source_geobox(source: UPath) -> GeoBox:
    """The source's pixel grid (shape, affine, CRS) as odc-geo describes it."""
    with open_raster(source) as src:
        return GeoBox((src.height, src.width), src.transform, src.crs.to_wkt())


def tiles_template(info, geobox: GeoBox, tile_size: int):
    """The store's metadata and coordinates, its data lazily defined and never computed."""
    spatial = odc.geo.xr.xr_zeros(geobox, dtype=info.dtype, chunks=(tile_size, tile_size))
    data = spatial.expand_dims(band=np.arange(1, info.band_count + 1, dtype="int32")).chunk({"band": 1})
    data.attrs = {"long_name": info.name, "grid_mapping": "spatial_ref"}
    dataset = data.to_dataset(name=VARIABLE)
    dataset["band"].attrs["long_name"] = "band number of the source raster (1-based)"
    dataset.attrs = {"Conventions": "CF-1.8", "source": info.path, "content_hash": info.content_hash, "tile_size": tile_size}
    return with_exact_transform(dataset)


def tile_stats(values: np.ndarray, nodata: float | None) -> dict:
    valid = valid_mask(values, nodata)
    good = values[valid].astype(np.float64)
    empty = good.size == 0
    return {
        "min": float("nan") if empty else float(good.min()),
        "max": float("nan") if empty else float(good.max()),
        "mean": float("nan") if empty else float(good.mean()),
        "std": float("nan") if empty else float(good.std()),
        "nodata_count": int(values.size - good.size),
        "valid_count": int(good.size),
    }


def write_tile(task: TileTask) -> dict:
    """Copy one tile into its zarr chunk and count it (runs on a Dask worker)."""
    with open_raster(task.source) as src:
        window = Window(task.col * task.tile_size, task.row * task.tile_size, task.tile_size, task.tile_size).intersection(
            Window(0, 0, src.width, src.height)
        )
        values = src.read(task.band, window=window)
        left, bottom, right, top = rasterio.windows.bounds(window, src.transform)
    array = open_array(task.store, task.storage_options)
    r0, c0 = int(window.row_off), int(window.col_off)
    array[task.band - 1, r0 : r0 + values.shape[0], c0 : c0 + values.shape[1]] = values
    row = {
        "tile_id": task.tile_id,
        "band": task.band, "tile_row": task.row, "tile_col": task.col,
        "row_off": r0, "col_off": c0, "height": values.shape[0], "width": values.shape[1],
        "chunk_key": f"{VARIABLE}/{task.band - 1}.{task.row}.{task.col}",
        "left": left, "bottom": bottom, "right": right, "top": top,
        **tile_stats(values, task.nodata),
    }
    # after the chunk: a record means the tile is done (a task killed before it is redone)
    atomic_write_text(_store_path(task.store, task.storage_options) / PROGRESS / f"{task.tile_id}.json", json.dumps(row), durable=False)
    return row


def _store_path(store: str, storage_options: dict) -> UPath:
    return UPath(store, **(storage_options or {})) if "://" in store else UPath(store)


def resume_token(info, tile_size: int) -> str:
    """What a tiles build is of: the source's bytes, nodata and shape, the tile size and the layout version."""
    described = json.dumps([info.content_hash, info.nodata, info.width, info.height, info.band_count, tile_size, LAYOUT_VERSION])
    return hashlib.sha256(described.encode()).hexdigest()[:24]


def finished_tiles(store: UPath) -> dict[str, dict]:
    """The index rows of tiles an earlier attempt of this build already wrote (one listing)."""
    folder = store / PROGRESS
    if not folder.exists():
        return {}
    return {path.stem: json.loads(path.read_text()) for path in folder.iterdir() if path.suffix == ".json"}


def drop_progress(store: UPath) -> None:
    """Remove the per-tile records before the store is published."""
    folder = store / PROGRESS
    if folder.exists():
        folder.fs.rm(folder.path, recursive=True)


def tile_tasks(info, store: UPath, storage_options: dict, tile_size: int) -> list[TileTask]:
    """Create the (empty) tiles store for a source at ``store`` (unless a resumed build made it) and list
    one task per (band, tile); a source on the store's filesystem is opened with its options."""
    source = located(info.path, store)
    encoding = {VARIABLE: {"chunks": (1, tile_size, tile_size), "_FillValue": info.nodata}}
    if not (store / VARIABLE / ".zarray").exists():  # else a resumed build: the store of the same token is there
        tiles_template(info, source_geobox(source), tile_size).to_zarr(
            str(store) if not is_local(store) else store.path, mode="w-", compute=False, encoding=encoding,
            consolidated=False, zarr_format=2, storage_options=(storage_options or None) if not is_local(store) else None,
        )
    rows = -(-info.height // tile_size)
    cols = -(-info.width // tile_size)
    target = str(store) if not is_local(store) else store.path
    return [
        TileTask(source, target, storage_options, band, r, c, tile_size, info.nodata)
        for band in range(1, info.band_count + 1) for r in range(rows) for c in range(cols)
    ]


def read_tile(store: str, chunk_key: str, storage_options: dict | None = None) -> np.ndarray:
    """One tile by its index entry: a single chunk read."""
    band, row, col = chunk_key.split("/")[-1].split(".")
    array = open_array(store, storage_options or {}, mode="r")
    size = array.chunks[1:]
    return array[int(band), int(row) * size[0] : (int(row) + 1) * size[0], int(col) * size[1] : (int(col) + 1) * size[1]]
