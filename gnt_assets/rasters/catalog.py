"""The raster catalog: one row per known source, good or failed, from the per-source entries
written at registration and each source's state (``states``). A failed registration never
overwrites a good entry, so the catalog keeps the last good description of every source beside
its current state and error."""

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
from gnt_assets.rasters.sources import HASH_PREFIX, SourceInfo
from gnt_assets.rasters.states import STATES, read_states

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
        # a bare hex digest is a SHA-256 recorded before BLAKE3: listed, and source_unchanged compares by SHA-256
        "content_hash": pa.Column(str, pa.Check.str_matches(rf"^({HASH_PREFIX})?[0-9a-f]{{64}}$"), nullable=True),
        "status": pa.Column(str, pa.Check.isin(STATES)),
        "status_detail": pa.Column(str, nullable=True),
        "status_since": pa.Column(str, nullable=True),
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


def build_catalog(folder: UPath, known: list[str] | tuple[str, ...] = ()) -> gpd.GeoDataFrame:
    """Every source: its last good entry (with the last error beside it), or its error alone if it never
    registered, or only its key (``known``: the partitions Dagster has) while no step has run for it.
    ``status`` is the source's state; a good entry from before states were kept reads as ready."""
    rows = {key: {"key": key, "path": None, "status": "pending", "error": None, "geometry": None} for key in known}
    for path in sorted((folder / "sources").glob("*.json")) if (folder / "sources").exists() else []:
        row = json.loads(path.read_text())
        rows[row["key"]] = {**row, "status": "ready", "error": None, "geometry": extent_lonlat(row)}
    for path in sorted((folder / "errors").glob("*.json")) if (folder / "errors").exists() else []:
        row = json.loads(path.read_text())
        if row["key"] in rows and rows[row["key"]]["path"] is not None and "crs" in rows[row["key"]]:
            rows[row["key"]]["error"] = row["error"]
        else:
            rows[row["key"]] = {**row, "status": "error", "geometry": None}
    for key, record in read_states(folder).items():
        row = rows.setdefault(key, {"key": key, "path": None, "error": None, "geometry": None})
        row.update(status=record["state"], status_detail=record["detail"] or None, status_since=record["since"])
        if record["state"] == "error" and not row.get("error"):
            row["error"] = record["detail"]
    numeric, text = ("width", "height", "band_count", "pixel_size_x"), ("path", "kind", "crs", "content_hash", "status_detail", "status_since", "error")
    frame = pd.DataFrame(list(rows.values()), columns=sorted({c for r in rows.values() for c in r} | {"key", "status", "geometry", *numeric, *text}))
    for column in numeric:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    for column in text:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["path"] = frame["path"].fillna("")
    CATALOG_SCHEMA.validate(frame)
    return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")
