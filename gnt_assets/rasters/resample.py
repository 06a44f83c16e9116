"""Resampling one raster onto one grid, with the per-grid weight cache and the result store.

Weights (exact coverage fractions) depend only on the grid and the raster's pixel grid
(CRS, transform, shape), so they are cached under that key and reused by every band,
method and raster sharing the pixel grid. Results are stored per source content hash x
grid x method x band: a repeat request reads the stored table and counts a hit.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import time
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from PIL import Image, ImageDraw
from rasterio.windows import Window, from_bounds
from upath import UPath

from gnt_assets.core.atomic import atomic_open, atomic_write_bytes, atomic_write_text, located
from gnt_assets.core.rio import open_raster
from gnt_assets.rasters.grids import GridError, cell_centres
from gnt_assets.rasters.zonal import (
    AREA_METHODS,
    METHODS,
    CoverageWeights,
    ZonalAccumulator,
    ZonalResult,
    coverage_weights,
    point_sample,
    valid_mask,
)

# Bump when resampled values change for the same inputs: it is part of the result-store key
# and of the resampled assets' code_version, so old results are neither served nor shown fresh.
ALGORITHM_VERSION = "4"  # 4: blocks of whole tile rows (sums of cells across blocks in another order: up to 3e-14 apart)
# Bump when the cached coverage weights' format or values change: it is part of the weights key,
# so a weights file written by other code is never read as this code's (run-length since "runs-1";
# "runs-2": int32 pixel indices, partly covered pixels by cell offsets, .npy arrays one after another).
WEIGHTS_VERSION = "runs-2"
WEIGHTS_SUFFIX = ".weights"


def cells_in_raster_crs(cells: gpd.GeoDataFrame, raster_crs: str, bounds, *, raster_name: str, grid_name: str) -> gpd.GeoDataFrame:
    """Grid cells that touch the raster, in the raster's CRS (edges densified so curved
    cell sides stay close to the true cell); errors name the raster and the grid."""
    if cells.crs is not None and cells.crs.is_projected:
        size = float(np.sqrt(np.median(cells.geometry.area)))
        cells = cells.set_geometry(shapely.segmentize(cells.geometry.values, size / 8))
    try:
        moved = cells.to_crs(raster_crs)
    except Exception as error:  # pyproj raises several types for impossible transforms
        raise GridError(f"{raster_name}: CRS {raster_crs} is not supported for grid {grid_name!r} ({error})") from error
    finite = np.isfinite(shapely.get_coordinates(moved.geometry.values)).all() if len(moved) else True
    if not finite:
        raise GridError(f"{raster_name}: cells of grid {grid_name!r} do not project into CRS {raster_crs} (unsupported CRS)")
    hits = moved[moved.intersects(shapely.box(*bounds))]
    if hits.empty:
        raise GridError(f"{raster_name}: grid {grid_name!r} does not intersect the raster (bounds {tuple(round(b, 6) for b in bounds)})")
    return hits


def grid_content_hash(cells: gpd.GeoDataFrame) -> str:
    """A hash of the grid's cells (ids, geometry, CRS): a redefined grid under the same name
    is a different grid, so nothing cached for the old one is ever served for it."""
    digest = hashlib.sha256(str(cells.crs).encode())
    digest.update("\n".join(map(str, cells.cell_id)).encode())
    digest.update(b"".join(shapely.to_wkb(cells.geometry.values, output_dimension=2)))
    return digest.hexdigest()


def weights_key(grid_hash: str, crs: str, transform, shape, rows: tuple[int, int]) -> str:
    """Weights of one block of rows of the cells' window, for one grid content and pixel grid."""
    return hashlib.sha256(json.dumps([WEIGHTS_VERSION, grid_hash, crs, list(transform)[:6], list(shape), list(rows)]).encode()).hexdigest()[:32]


def _save_weights(handle, cells: np.ndarray, weights: CoverageWeights) -> None:
    """The arrays' names, then each array, as .npy one after another: streamed, with no copy (an .npz
    zips them, checksum included: about twice the CPU time, 3.8 ms against 2.0 ms for 6.2 MB of weights)."""
    arrays = {"cells": cells, **weights.arrays()}
    np.save(handle, np.array(list(arrays)))
    for array in arrays.values():
        np.save(handle, array)


def _load_weights(path: UPath):
    with path.open("rb") as handle:
        data = {str(name): np.load(handle) for name in np.load(handle)}
    return data["cells"], CoverageWeights.from_arrays(data)


def block_weights(folder: UPath, key: str, geoms, cells: np.ndarray, transform, shape):
    """Coverage of the block's pixels by ``geoms`` (global cell numbers ``cells``), from the
    weights cache when present; returns (cells, weights, cached)."""
    path = folder / f"{key}{WEIGHTS_SUFFIX}"
    if path.exists():
        return (*_load_weights(path), True)
    weights = coverage_weights(geoms, transform, shape)
    with atomic_open(path, durable=False) as handle:  # streamed: no in-memory copy of a block's weights
        _save_weights(handle, cells, weights)
    _record_access(path, hit=False)
    return cells, weights, False


def _record_access(path: UPath, hit: bool) -> None:
    log = path.with_suffix(".access.json")
    stats = json.loads(log.read_text()) if log.exists() else {"hits": 0, "created": time.time()}
    stats["hits"] += int(hit)
    stats["last_access"] = time.time()
    atomic_write_text(log, json.dumps(stats))


def result_key(*, source_hash: str, grid_hash: str, nodata, kind: str, band: int, method: str) -> str:
    """Everything a resampled table depends on: raster bytes, effective nodata, kind, band,
    grid content, method and the algorithm version."""
    parts = [ALGORITHM_VERSION, source_hash, grid_hash, None if nodata is None else repr(float(nodata)), kind, int(band), method]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:40]


class ResultStore:
    """Resampled tables keyed by ``result_key`` (raster content, nodata, kind, band, grid content,
    method, algorithm version), with access counts; the coverage weights cache beside it
    (``weights/``, same access log) is cleaned with it."""

    def __init__(self, root: UPath):
        self.root = root

    def _path(self, key: str) -> UPath:
        return self.root / "results" / key[:2] / f"{key}.parquet"

    @property
    def weights_folder(self) -> UPath:
        return self.root / "weights"

    def _touch(self, path: UPath, hit: bool) -> None:
        _record_access(path, hit)

    def get(self, key: str) -> pd.DataFrame | None:
        path = self._path(key)
        if not path.exists():
            return None
        with path.open("rb") as handle:
            table = pd.read_parquet(handle)
        self._touch(path, hit=True)
        return table

    def put(self, key: str, table: pd.DataFrame) -> None:
        path = self._path(key)
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
        self._touch(path, hit=False)

    def entries(self) -> list[dict]:
        if not self.root.exists():
            return []
        rows = []
        for log in self.root.rglob("*.access.json"):
            # a result, weights, or weights of WEIGHTS_VERSION runs-1 (.npz: never read again, removed by cleanup)
            candidates = [log.with_name(log.name.replace(".access.json", suffix)) for suffix in (".parquet", WEIGHTS_SUFFIX, ".npz")]
            data = next((path for path in candidates if path.exists()), candidates[0])
            kind = "weights" if self.weights_folder in log.parents else "result"
            rows.append({"path": str(data), "kind": kind, "bytes": data.stat().st_size if data.exists() else 0, **json.loads(log.read_text())})
        return rows

    def stats(self) -> dict:
        """Resampled tables (entries, bytes, hits) and, apart, the coverage weights cached for them."""
        entries = self.entries()
        results = [e for e in entries if e["kind"] == "result"]
        weights = [e for e in entries if e["kind"] == "weights"]
        return {
            "entries": len(results),
            "bytes": sum(e["bytes"] for e in results),
            "hits": sum(e["hits"] for e in results),
            "last_access": max((e["last_access"] for e in entries), default=0.0),
            "weights_entries": len(weights),
            "weights_bytes": sum(e["bytes"] for e in weights),
        }

    def cleanup(self, days_old: float, min_access: int, now: float | None = None) -> list[str]:
        """Remove entries not accessed for ``days_old`` days that were hit fewer than ``min_access`` times."""
        now = time.time() if now is None else now
        removed = []
        for entry in self.entries():
            if now - entry["last_access"] >= days_old * 86400 and entry["hits"] < min_access:
                data = UPath(entry["path"])
                for path in (data, data.with_suffix(".access.json")):
                    if path.exists():
                        path.unlink()
                removed.append(entry["path"])
        return removed


def cells_window(src, bounds, pad: int = 3) -> Window:
    """The raster window under the cells (plus the cubic kernel's reach): only that part of a
    band is read, so a global raster resampled to a small study area stays small in memory."""
    box = from_bounds(*bounds, transform=src.transform)
    col0 = max(0, math.floor(box.col_off) - pad)
    row0 = max(0, math.floor(box.row_off) - pad)
    col1 = min(src.width, math.ceil(box.col_off + box.width) + pad)
    row1 = min(src.height, math.ceil(box.row_off + box.height) + pad)
    return Window(col0, row0, max(col1 - col0, 1), max(row1 - row0, 1))


# Bytes one pixel of a block costs while it is resampled: its value (8 at most) and valid flag, and
# for majority about 1.2 covered pixels gathered as (cell, value, weight) and sorted.
BYTES_PER_BLOCK_PIXEL = 16
BYTES_PER_BLOCK_PIXEL_MAJORITY = 96
POINT_PAD = 2  # rows the cubic kernel reaches beyond a point's base row


@dataclass(frozen=True)
class BlockPlan:
    """Rows of the cells' window in blocks sized so a block's arrays fit 3/8 of the memory limit and
    GDAL's block cache an eighth (the rest is left to cells, their run-length coverage and Python).
    Where whole rows of the raster's tiles fit, blocks are made of them: GDAL then reads the tiles
    straight into the block (a block cutting tiles is copied through its cache: 0.5 s against 0.3 s
    for 1.6 GB)."""

    rows: list[tuple[int, int]]

    @classmethod
    def for_window(cls, height: int, width: int, memory_limit_mb: float, *, bytes_per_pixel: int = BYTES_PER_BLOCK_PIXEL,
                   row_off: int = 0, tile_rows: int = 1) -> BlockPlan:
        """``row_off``: the window's first row in the raster; ``tile_rows``: the height of the raster's tiles."""
        budget = memory_limit_mb * 2**20
        block_rows = max(1, int(budget * 3 / 8 / (width * bytes_per_pixel)))
        first = 0
        if block_rows >= tile_rows:
            block_rows -= block_rows % tile_rows
            first = -row_off % block_rows  # the first block ends on a tile row
        edges = [0, *range(first or block_rows, height, block_rows), height]
        return cls(list(itertools.pairwise(edges)))


def gdal_cache_mb(memory_limit_mb: float) -> int:
    """GDAL's block cache while a task reads: the eighth of its memory limit ``BlockPlan`` leaves for it."""
    return max(16, int(memory_limit_mb / 8))


class Progress:
    """Blocks done of total, rate and time left, logged at most every 10 % (and at the end)."""

    def __init__(self, total: int, log=None, label: str = "blocks"):
        self.total, self.log, self.label = total, log, label
        self.done, self.start, self.next_report = 0, time.monotonic(), 0.1

    def step(self) -> None:
        self.done += 1
        if self.log is None or (self.done / self.total < self.next_report and self.done < self.total):
            return
        self.next_report = self.done / self.total + 0.1
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else float("inf")
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        self.log(f"{self.label} {self.done}/{self.total} ({rate:.2f}/s, about {left:.0f} s left)")


def _point_rows(centres_xy, transform, shape) -> np.ndarray:
    """The window row under each point; points outside the window count as row 0 (point_sample
    makes them NaN, sampling the first rows)."""
    inverse = ~transform
    u = inverse.a * centres_xy[:, 0] + inverse.b * centres_xy[:, 1] + inverse.c
    v = inverse.d * centres_xy[:, 0] + inverse.e * centres_xy[:, 1] + inverse.f
    inside = (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    return np.where(inside, np.floor(np.where(inside, v, 0)), 0).astype(np.int64)


def resample(info, cells: gpd.GeoDataFrame, grid_name: str, methods, store: ResultStore, *,
             memory_limit_mb: float = 1536, log=None, like: UPath | None = None) -> tuple[pd.DataFrame, dict]:
    """Long table (cell_id, band, method, value, valid_fraction) for every method and band; cached parts are read.

    The raster is opened by path and read block by block (full-width rows of the cells'
    window, sized by ``memory_limit_mb``); coverage weights are computed (or read from the
    weights cache) per block, and area statistics accumulate across blocks, equal to the
    whole-window computation. Point methods sample each cell centre in the block holding its row.
    ``like``: the storage root, whose options a source on its filesystem needs."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"{info.key}: unknown resampling methods {unknown}; use {', '.join(METHODS)}")
    local = cells_in_raster_crs(cells, info.crs, (info.left, info.bottom, info.right, info.top), raster_name=info.path, grid_name=grid_name)
    grid_hash = grid_content_hash(cells)
    tables, counts = [], {"cache_hits": 0, "computed": 0, "weights_cached": False, "blocks": 0, "warnings": []}
    todo: dict[int, list[str]] = {}
    for band in range(1, info.band_count + 1):
        for method in methods:
            key = result_key(source_hash=info.content_hash, grid_hash=grid_hash, nodata=info.nodata, kind=info.kind, band=band, method=method)
            table = store.get(key)
            if table is None:
                todo.setdefault(band, []).append(method)
            else:
                counts["cache_hits"] += 1
                tables.append(table)
    if todo:
        with open_raster(located(info.path, like), cache_mb=gdal_cache_mb(memory_limit_mb)) as src:
            window = cells_window(src, local.total_bounds)
            transform = src.window_transform(window)
            majority = any("majority" in ms for ms in todo.values())
            plan = BlockPlan.for_window(int(window.height), int(window.width), memory_limit_mb, row_off=int(window.row_off),
                                        bytes_per_pixel=BYTES_PER_BLOCK_PIXEL_MAJORITY if majority else BYTES_PER_BLOCK_PIXEL,
                                        tile_rows=src.block_shapes[0][0])
            geoms = local.geometry.values
            pixel_area = abs(transform.a * transform.e)
            cell_pixels = shapely.area(geoms) / pixel_area
            point_methods = sorted({m for ms in todo.values() for m in ms if m not in AREA_METHODS})
            if point_methods and len(cell_pixels) and float(np.median(cell_pixels)) > 16:
                counts["warnings"].append(
                    f"{', '.join(point_methods)} sample only each cell's centre, but a cell spans about {float(np.median(cell_pixels)):.0f} pixels "
                    "(aliasing); use mean or majority for cells much larger than pixels")
            centres = shapely.get_coordinates(cell_centres(cells.loc[local.index]).to_crs(info.crs).values) if point_methods else None
            centre_rows = _point_rows(centres, transform, (int(window.height), int(window.width))) if point_methods else None
            bounds = shapely.bounds(geoms)
            inverse = ~transform
            v_top = inverse.e * bounds[:, 3] + inverse.f
            v_bottom = inverse.e * bounds[:, 1] + inverse.f
            rmin, rmax = np.floor(np.minimum(v_top, v_bottom)), np.floor(np.maximum(v_top, v_bottom))
            progress = Progress(len(plan.rows) * len(todo), log, label=f"{info.key} on {grid_name}: blocks")
            # One buffer for every block's values and one for its valid flags (fresh arrays cost their pages each time).
            rows = max(r1 - r0 for r0, r1 in plan.rows) + (2 * POINT_PAD + 1 if point_methods else 0)
            values_buffer = np.empty((rows, int(window.width)), src.dtypes[0])
            valid_buffer = np.empty((rows, int(window.width)), bool)
            for band, band_methods in todo.items():
                area = [m for m in band_methods if m in AREA_METHODS]
                accumulator = ZonalAccumulator(cell_pixels, area) if area else None
                points = {m: (np.full(len(local), np.nan), np.zeros(len(local))) for m in band_methods if m not in AREA_METHODS}
                for r0, r1 in plan.rows:
                    lo = max(0, r0 - POINT_PAD) if points else r0
                    hi = min(int(window.height), r1 + POINT_PAD + 1) if points else r1
                    values = src.read(band, window=Window(window.col_off, window.row_off + lo, window.width, hi - lo), out=values_buffer[: hi - lo])
                    valid = valid_mask(values, info.nodata, out=valid_buffer[: hi - lo])
                    if accumulator is not None:
                        selected = np.flatnonzero((rmax >= r0) & (rmin < r1))
                        if len(selected):
                            block_transform = transform @ Affine.translation(0, r0)
                            key = weights_key(grid_hash, info.crs, transform, (int(window.height), int(window.width)), (r0, r1))
                            sel, weights, cached = block_weights(store.weights_folder, key, geoms[selected], selected, block_transform,
                                                                 (r1 - r0, int(window.width)))
                            counts["weights_cached"] = bool(cached)
                            accumulator.add(sel, weights, values[r0 - lo : r1 - lo], valid[r0 - lo : r1 - lo])
                    for method, (value, fraction) in points.items():
                        here = np.flatnonzero((centre_rows >= r0) & (centre_rows < r1))
                        if len(here):
                            result = point_sample(centres[here], transform, values, valid, method, row_offset=lo,
                                                  full_shape=(int(window.height), int(window.width)))
                            value[here], fraction[here] = result.value, result.valid_fraction
                    counts["blocks"] += 1
                    progress.step()
                for method in band_methods:
                    result = accumulator.result(method) if method in AREA_METHODS else ZonalResult(*points[method])
                    table = pd.DataFrame({"cell_id": local.cell_id.to_numpy(), "band": band, "method": method,
                                          "value": result.value, "valid_fraction": result.valid_fraction})
                    key = result_key(source_hash=info.content_hash, grid_hash=grid_hash, nodata=info.nodata, kind=info.kind, band=band, method=method)
                    store.put(key, table)
                    counts["computed"] += 1
                    tables.append(table)
    return pd.concat(tables, ignore_index=True), counts


def resample_to_grid(raster: str, grid: gpd.GeoDataFrame, methods=None, *, cache: str | UPath | None = None,
                     kind: str = "continuous", nodata: float | None = None, memory_limit_mb: float = 1536) -> pd.DataFrame:
    """The seed's Python API: values of ``raster`` (a path or URL) per cell of ``grid`` (a
    GeoDataFrame with ``cell_id``) for ``methods`` (default: the kind's defaults), as the
    long table of the pipeline, cached under ``cache`` (default: a temporary folder)."""
    import tempfile

    from gnt_assets.rasters.sources import DEFAULT_METHODS, SourceEntry, inspect

    info = inspect(SourceEntry(key=UPath(raster).stem, path=str(raster), name=UPath(raster).stem, kind=kind, nodata=nodata))
    methods = list(methods or DEFAULT_METHODS[kind])
    if cache is not None:
        return resample(info, grid, "grid", methods, ResultStore(UPath(cache)), memory_limit_mb=memory_limit_mb)[0]
    with tempfile.TemporaryDirectory() as folder:
        return resample(info, grid, "grid", methods, ResultStore(UPath(folder)), memory_limit_mb=memory_limit_mb)[0]


def choropleth_png(cells: gpd.GeoDataFrame, values: pd.Series, size: int = 480) -> bytes:
    """Cells filled by value (grey ramp, nodata transparent), drawn with PIL."""
    x0, y0, x1, y1 = cells.total_bounds
    scale = size / max(x1 - x0, y1 - y0)
    image = Image.new("RGBA", (int((x1 - x0) * scale) + 1, int((y1 - y0) * scale) + 1), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    finite = values[np.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    for geom, value in zip(cells.geometry.values, values.to_numpy(), strict=False):
        if not np.isfinite(value):
            continue
        level = int(40 + 215 * (value - lo) / (hi - lo)) if hi > lo else 160
        for part in shapely.get_parts(geom):
            xy = shapely.get_coordinates(part.exterior)
            draw.polygon([((x - x0) * scale, (y1 - y) * scale) for x, y in xy], fill=(level, level // 2, 255 - level, 255), outline=(0, 0, 0, 80))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
