"""The raster catalog: one row per registered source, good or failed, from the per-source
entries written at registration. A failed registration never overwrites a good entry, so
the catalog keeps the last good state of every source."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import shapely
from pyproj import Transformer
from pyproj.exceptions import ProjError
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.rasters.sources import SourceInfo

CATALOG_SCHEMA = pa.DataFrameSchema(
    {
        "key": pa.Column(str, unique=True),
        "path": pa.Column(str),
        "kind": pa.Column(str, pa.Check.isin(["continuous", "categorical", "count"]), nullable=True),
        "crs": pa.Column(str, nullable=True),
        "width": pa.Column(float, pa.Check.gt(0), nullable=True),
        "height": pa.Column(float, pa.Check.gt(0), nullable=True),
        "band_count": pa.Column(float, pa.Check.ge(1), nullable=True),
        "pixel_size_x": pa.Column(float, pa.Check.gt(0), nullable=True),
        "content_hash": pa.Column(str, pa.Check.str_length(64, 64), nullable=True),
        "status": pa.Column(str, pa.Check.isin(["ready", "error"])),
        "error": pa.Column(str, nullable=True),
    },
    strict=False,
)


def record_source(folder: UPath, info: SourceInfo) -> None:
    atomic_write_text(folder / "sources" / f"{info.key}.json", json.dumps(info.as_row()))
    error = folder / "errors" / f"{info.key}.json"
    if error.exists():
        error.unlink()


def record_error(folder: UPath, key: str, path: str, message: str) -> None:
    atomic_write_text(folder / "errors" / f"{key}.json", json.dumps({"key": key, "path": path, "error": message}))


def load_source(folder: UPath, key: str) -> SourceInfo:
    path = folder / "sources" / f"{key}.json"
    if not path.exists():
        raise FileNotFoundError(f"raster {key!r} has no good registration ({path}); materialize raster_source first")
    return SourceInfo(**json.loads(path.read_text()))


def extent_lonlat(row: dict):
    """The source's extent in lon/lat, or None for a CRS with no path to lon/lat (e.g. a local
    engineering CRS): such a source is still listed, and fails at resampling with a named error."""
    try:
        to_ll = Transformer.from_crs(row["crs"], "EPSG:4326", always_xy=True)
        box = shapely.box(*to_ll.transform_bounds(row["left"], row["bottom"], row["right"], row["top"], densify_pts=21))
    except ProjError:
        return None
    return box if np.isfinite(shapely.bounds(box)).all() else None


def build_catalog(folder: UPath) -> gpd.GeoDataFrame:
    """Good entries (status ready, last error kept beside them) and sources never registered (status error)."""
    rows = {}
    for path in sorted((folder / "sources").glob("*.json")) if (folder / "sources").exists() else []:
        row = json.loads(path.read_text())
        rows[row["key"]] = {**row, "status": "ready", "error": None, "geometry": extent_lonlat(row)}
    for path in sorted((folder / "errors").glob("*.json")) if (folder / "errors").exists() else []:
        row = json.loads(path.read_text())
        if row["key"] in rows:
            rows[row["key"]]["error"] = row["error"]
        else:
            rows[row["key"]] = {**row, "status": "error", "geometry": None}
    frame = pd.DataFrame(list(rows.values()), columns=sorted({c for r in rows.values() for c in r} | {"key", "path", "status", "error", "geometry"}))
    for column in ("width", "height", "band_count", "pixel_size_x"):
        frame[column] = pd.to_numeric(frame.get(column), errors="coerce").astype(float)
    for column in ("kind", "crs", "content_hash", "error"):
        frame[column] = frame.get(column, pd.Series(dtype=object)).astype(object).where(frame.get(column).notna(), None)
    CATALOG_SCHEMA.validate(frame)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
