"""Tiles of a registered raster: a zarr copy with one chunk per tile, and per-tile statistics.

Why zarr: GeoTIFF blocks must be multiples of 16 pixels, so 1000-pixel tiles would
straddle blocks; a zarr v3 array chunked (1, tile, tile) stores every tile as exactly one
object (``c/{band}/{row}/{col}``), so a reader fetches any tile with one GET / range read.
Each tile is read, written and counted by one task, so memory is bounded by the tile
size and tasks run in parallel on the compute resource's Dask cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
import zarr
from rasterio.windows import Window
from upath import UPath

from gnt_assets.core.atomic import is_local
from gnt_assets.rasters.rio import open_raster


@dataclass(frozen=True)
class TileTask:
    source: str
    store: str
    storage_options: dict
    band: int
    row: int
    col: int
    tile_size: int
    nodata: float | None


def open_array(store: str, storage_options: dict, mode: str = "r+", **create):
    if "://" in store:
        store = zarr.storage.FsspecStore.from_url(store, storage_options=storage_options or None, read_only=False)
    if create:
        return zarr.create_array(store=store, overwrite=True, **create)
    return zarr.open_array(store=store, mode=mode)


def valid_mask(values: np.ndarray, nodata: float | None) -> np.ndarray:
    valid = np.isfinite(values) if np.issubdtype(values.dtype, np.floating) else np.ones(values.shape, bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= values != nodata
    return valid


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
    source = UPath(task.source)
    with open_raster(source) as src:
        window = Window(task.col * task.tile_size, task.row * task.tile_size, task.tile_size, task.tile_size).intersection(
            Window(0, 0, src.width, src.height)
        )
        values = src.read(task.band, window=window)
        left, bottom, right, top = rasterio.windows.bounds(window, src.transform)
    array = open_array(task.store, task.storage_options)
    r0, c0 = int(window.row_off), int(window.col_off)
    array[task.band - 1, r0 : r0 + values.shape[0], c0 : c0 + values.shape[1]] = values
    return {
        "tile_id": f"b{task.band}_r{task.row:04d}_c{task.col:04d}",
        "band": task.band, "tile_row": task.row, "tile_col": task.col,
        "row_off": r0, "col_off": c0, "height": values.shape[0], "width": values.shape[1],
        "chunk_key": f"c/{task.band - 1}/{task.row}/{task.col}",
        "left": left, "bottom": bottom, "right": right, "top": top,
        **tile_stats(values, task.nodata),
    }


def tile_tasks(info, store: UPath, storage_options: dict, tile_size: int) -> list[TileTask]:
    """Create the zarr array for a source and list one task per (band, tile)."""
    fill = info.nodata if info.nodata is not None else 0
    open_array(
        str(store) if not is_local(store) else store.path, storage_options,
        shape=(info.band_count, info.height, info.width), chunks=(1, tile_size, tile_size),
        dtype=info.dtype, fill_value=fill, attributes={"crs": info.crs, "source": info.path, "content_hash": info.content_hash},
    )
    rows = -(-info.height // tile_size)
    cols = -(-info.width // tile_size)
    target = str(store) if not is_local(store) else store.path
    return [
        TileTask(info.path, target, storage_options, band, r, c, tile_size, info.nodata)
        for band in range(1, info.band_count + 1) for r in range(rows) for c in range(cols)
    ]


def read_tile(store: str, chunk_key: str, storage_options: dict | None = None) -> np.ndarray:
    """One tile by its index entry: a single chunk read."""
    _, band, row, col = chunk_key.split("/")
    array = open_array(store, storage_options or {}, mode="r")
    size = array.chunks[1:]
    return array[int(band), int(row) * size[0] : (int(row) + 1) * size[0], int(col) * size[1] : (int(col) + 1) * size[1]]
