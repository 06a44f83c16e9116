"""From partition keys to chunk jobs and back: cube paths, store initialisation, per-chunk result records."""

from __future__ import annotations

import dataclasses
import json
from datetime import date
from pathlib import Path

import geopandas as gpd
import pandas as pd
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.zarr_regions import append_along, create_store, store_exists
from gnt_assets.sentinel.cube import VARIABLE, CubeLayout, cube_encoding, cube_layout, cube_template
from gnt_assets.sentinel.mosaic import ChunkJob, ChunkResult, mosaic_chunk_logged

run_chunk = mosaic_chunk_logged
DURATIONS = ("search_s", "load_s", "mask_s", "median_s", "write_s", "total_s")


def demo_aoi_path(storage) -> Path:
    from gnt_assets.local.sentinel import ensure_demo_aoi

    root = storage.root_path
    if root.protocol not in ("", "file", "local"):
        raise ValueError("sentinel_aoi: set an AOI path or bbox; the generated demo AOI needs a local storage root")
    return ensure_demo_aoi(Path(root.path) / "sentinel_source")


def layout_for(cells: gpd.GeoDataFrame) -> CubeLayout:
    first = cells.iloc[0]
    return cube_layout(cells, first["crs"], float(first["resolution"]), int(first["chunk_px"]))


def cube_path(storage, grid: str) -> UPath:
    return storage.path("sentinel", f"cube_{grid}.zarr")


def _result_path(storage, month: str, chunk: str) -> UPath:
    return storage.path("sentinel", "results", month, f"{chunk}.json")


def _cell(grid_table: gpd.GeoDataFrame, chunk: str) -> pd.Series:
    rows = grid_table[grid_table["chunk"] == chunk]
    if rows.empty:
        raise KeyError(f"chunk {chunk!r} is not a cell of the current sentinel_grid; re-materialize the grid or drop the partition")
    return rows.iloc[0]


def ensure_cube(store: UPath, layout: CubeLayout, months: list[str], bands: list[str]) -> None:
    """Create the store (metadata only) once, then add any month it lacks at the end of the time axis."""
    if not store_exists(store):
        create_store(store, cube_template(layout, months[:1], bands), encoding=cube_encoding(layout, bands))
    for month in months:
        append_along(store, "time", cube_template(layout, [month], bands))


def chunk_jobs(storage, grid_table: gpd.GeoDataFrame, stac, url: str, keys: list[tuple[str, str]]) -> list[ChunkJob]:
    bands = list(stac.band_assets)
    jobs, layouts = [], {}
    for month, chunk in keys:
        cell = _cell(grid_table, chunk)
        if cell["grid"] not in layouts:
            layouts[cell["grid"]] = layout_for(grid_table[grid_table["grid"] == cell["grid"]])
            months = sorted({m for m, c in keys if _cell(grid_table, c)["grid"] == cell["grid"]})
            ensure_cube(cube_path(storage, cell["grid"]), layouts[cell["grid"]], months, bands)
        jobs.append(ChunkJob(
            chunk=chunk, month=month, query=stac.query(url, tuple(cell.geometry.bounds), date.fromisoformat(month)),
            band_assets=dict(stac.band_assets), scl_asset=stac.scl_asset, layout=layouts[cell["grid"]],
            store=cube_path(storage, cell["grid"]), modifier=stac.modifier(), aws_unsigned=stac.aws_unsigned,
        ))
    return jobs


def record_result(storage, result: ChunkResult) -> None:
    record = {k: v for k, v in dataclasses.asdict(result).items() if k != "look"}
    atomic_write_text(_result_path(storage, result.month, result.chunk), json.dumps(record))


def read_result(storage, month: str, chunk: str) -> dict:
    path = _result_path(storage, month, chunk)
    if not path.exists():
        raise FileNotFoundError(f"month {month} chunk {chunk}: no mosaic result recorded at {path}")
    return json.loads(path.read_text())


def chunk_files(store: UPath, layout: CubeLayout, chunk: str, time_index: int) -> list[UPath]:
    """The zarr chunk objects a cell's region owns at one time step."""
    return [store / VARIABLE / "c" / str(time_index) / str(r) / str(k) / "0" for r, k in sorted(layout.chunks_of(chunk))]


def written_paths(storage, grid_table: gpd.GeoDataFrame, keys: list[tuple[str, str]]) -> list[UPath]:
    from gnt_assets.core.zarr_regions import open_store

    paths = []
    for month, chunk in keys:
        cell = _cell(grid_table, chunk)
        store = cube_path(storage, cell["grid"])
        times = [str(t)[:10] for t in open_store(store)["time"].values]
        layout = layout_for(grid_table[grid_table["grid"] == cell["grid"]])
        paths += chunk_files(store, layout, chunk, times.index(month[:10]))
    return paths


def result_rows(results: list[ChunkResult]) -> list[dict]:
    return [{"month": r.month, "chunk": r.chunk, "success": r.success, "scenes": r.scenes,
             "valid_share": round(r.valid_share, 4), **{k: r.durations.get(k) for k in DURATIONS}, "error": r.error}
            for r in results]


def run_log(storage) -> pd.DataFrame:
    root = storage.path("sentinel", "results")
    records = [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))] if root.exists() else []
    frame = pd.DataFrame([{**{k: v for k, v in r.items() if k != "durations"}, **r.get("durations", {})} for r in records])
    columns = ["month", "chunk", "success", "scenes", "valid_share", "clear_pixels_unfilled", "minimum", "maximum",
               *DURATIONS, "error"]
    return frame.reindex(columns=columns)


def grid_table_path(storage) -> UPath:
    return storage.path("tables", "sentinel_grid.parquet")


def stored_region(storage, grid_table: gpd.GeoDataFrame, month: str, chunk: str):
    """(store, integer region, lazily opened data) of one partition in its cube."""
    from gnt_assets.core.zarr_regions import open_store

    cell = _cell(grid_table, chunk)
    store = cube_path(storage, cell["grid"])
    data = open_store(store)[VARIABLE]
    times = [str(t)[:10] for t in data["time"].values]
    if month[:10] not in times:
        raise KeyError(f"month {month} chunk {chunk}: the cube {store} has no time step for the month")
    layout = layout_for(grid_table[grid_table["grid"] == cell["grid"]])
    rows, cols = layout.regions[chunk]
    ydim, xdim = data.dims[1:3]
    region = {"time": slice(times.index(month[:10]), times.index(month[:10]) + 1), ydim: rows, xdim: cols}
    return store, region, data.isel(region)
