"""Resampling one raster onto one grid, with the per-grid weight cache and the result store.

Weights (exact coverage fractions) depend only on the grid and the raster's pixel grid
(CRS, transform, shape), so they are cached under that key and reused by every band,
method and raster sharing the pixel grid. Results are stored per source content hash x
grid x method x band: a repeat request reads the stored table and counts a hit.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import scipy.sparse as sp
import shapely
from PIL import Image, ImageDraw
from rasterio.windows import Window, from_bounds
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes, atomic_write_text
from gnt_assets.rasters.grids import GridError, cell_centres
from gnt_assets.rasters.tiling import valid_mask
from gnt_assets.rasters.zonal import AREA_METHODS, METHODS, CoverageWeights, coverage_weights, point_sample, zonal

# Bump when resampled values change for the same inputs: it is part of the result-store key
# and of the resampled assets' code_version, so old results are neither served nor shown fresh.
ALGORITHM_VERSION = "2"


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


def weights_key(grid_name: str, cell_ids, crs: str, transform, shape) -> str:
    digest = hashlib.sha256(json.dumps([grid_name, crs, list(transform)[:6], list(shape)]).encode())
    digest.update("\n".join(cell_ids).encode())
    return digest.hexdigest()[:24]


def cached_weights(folder: UPath, key: str, geoms, transform, shape) -> tuple[CoverageWeights, bool]:
    path = folder / f"{key}.npz"
    if path.exists():
        with path.open("rb") as handle:
            data = np.load(handle)
            matrix = sp.csr_matrix((data["data"], data["indices"], data["indptr"]), shape=tuple(data["mshape"]))
            return CoverageWeights(matrix, data["cell_area"], tuple(shape)), True
    weights = coverage_weights(geoms, transform, shape)
    buffer = io.BytesIO()
    m = weights.matrix
    np.savez(buffer, data=m.data, indices=m.indices, indptr=m.indptr, mshape=np.array(m.shape), cell_area=weights.cell_area)
    atomic_write_bytes(path, buffer.getvalue())
    return weights, False


class ResultStore:
    """Resampled tables keyed by source hash x grid x method x band, with access counts."""

    def __init__(self, root: UPath):
        self.root = root

    def _path(self, source_hash: str, grid: str, method: str, band: int) -> UPath:
        return self.root / f"v{ALGORITHM_VERSION}" / source_hash[:32] / grid / f"{method}_b{band}.parquet"

    def _touch(self, path: UPath, hit: bool) -> None:
        log = path.with_suffix(".access.json")
        stats = json.loads(log.read_text()) if log.exists() else {"hits": 0, "created": time.time()}
        stats["hits"] += int(hit)
        stats["last_access"] = time.time()
        atomic_write_text(log, json.dumps(stats))

    def get(self, source_hash: str, grid: str, method: str, band: int) -> pd.DataFrame | None:
        path = self._path(source_hash, grid, method, band)
        if not path.exists():
            return None
        with path.open("rb") as handle:
            table = pd.read_parquet(handle)
        self._touch(path, hit=True)
        return table

    def put(self, source_hash: str, grid: str, method: str, band: int, table: pd.DataFrame) -> None:
        path = self._path(source_hash, grid, method, band)
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        atomic_write_bytes(path, buffer.getvalue())
        self._touch(path, hit=False)

    def entries(self) -> list[dict]:
        if not self.root.exists():
            return []
        rows = []
        for log in self.root.rglob("*.access.json"):
            data = log.with_name(log.name.replace(".access.json", ".parquet"))
            rows.append({"path": str(data), "bytes": data.stat().st_size if data.exists() else 0, **json.loads(log.read_text())})
        return rows

    def stats(self) -> dict:
        entries = self.entries()
        return {
            "entries": len(entries),
            "bytes": sum(e["bytes"] for e in entries),
            "hits": sum(e["hits"] for e in entries),
            "last_access": max((e["last_access"] for e in entries), default=0.0),
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


def resample(info, cells: gpd.GeoDataFrame, grid_name: str, methods, weights_folder: UPath, store: ResultStore) -> tuple[pd.DataFrame, dict]:
    """Long table (cell_id, band, method, value, valid_fraction) for every method and band; cached parts are read."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"{info.key}: unknown resampling methods {unknown}; use {', '.join(METHODS)}")
    local = cells_in_raster_crs(cells, info.crs, (info.left, info.bottom, info.right, info.top), raster_name=info.path, grid_name=grid_name)
    tables, counts = [], {"cache_hits": 0, "computed": 0, "weights_cached": False}
    weights = centres = None
    with UPath(info.path).open("rb") as handle, rasterio.open(handle) as src:
        window = cells_window(src, local.total_bounds)
        transform = src.window_transform(window)
        for band in range(1, info.band_count + 1):
            values = None
            for method in methods:
                table = store.get(info.content_hash, grid_name, method, band)
                if table is not None:
                    counts["cache_hits"] += 1
                    tables.append(table)
                    continue
                if values is None:
                    values = src.read(band, window=window)
                    valid = valid_mask(values, info.nodata)
                if method in AREA_METHODS:
                    if weights is None:
                        key = weights_key(grid_name, local.cell_id.tolist(), info.crs, transform, values.shape)
                        weights, counts["weights_cached"] = cached_weights(weights_folder, key, local.geometry.values, transform, values.shape)
                    result = zonal(weights, values, valid, method)
                else:
                    if centres is None:
                        centres = shapely.get_coordinates(cell_centres(cells.loc[local.index]).to_crs(info.crs).values)
                    result = point_sample(centres, transform, values, valid, method)
                table = pd.DataFrame({"cell_id": local.cell_id.to_numpy(), "band": band, "method": method, "value": result.value, "valid_fraction": result.valid_fraction})
                store.put(info.content_hash, grid_name, method, band, table)
                counts["computed"] += 1
                tables.append(table)
    return pd.concat(tables, ignore_index=True), counts


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


def write_square_zarr(table: gpd.GeoDataFrame, path: UPath) -> UPath:
    """The square-grid result as an xarray Dataset (one variable per method and band, dims j x i)."""
    import xarray as xr

    from gnt_assets.core.atomic import atomic_directory, is_local

    parsed = table.cell_id.str.extract(r"^C[^_]+_(\d+)_(\d+)$").astype(int)
    frame = table.assign(i=parsed[0], j=parsed[1], var=table.method + "_b" + table.band.astype(str))
    values = frame.pivot_table(index=["j", "i"], columns="var", values="value", dropna=False)
    fraction = frame.pivot_table(index=["j", "i"], columns="var", values="valid_fraction", dropna=False).add_suffix("_valid_fraction")
    dataset = xr.Dataset.from_dataframe(values.join(fraction)).astype("float64")
    dataset.attrs["crs"] = table.crs.to_string()
    with atomic_directory(path) as target:
        dataset.to_zarr(target.path if is_local(target) else str(target), mode="w", consolidated=False)
    return path
