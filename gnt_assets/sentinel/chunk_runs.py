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
from gnt_assets.core.errors import InputError
from gnt_assets.sentinel.cube import BLOCK_MONTHS, DEFAULT_END_MONTH, VARIABLE, CubeLayout, cube_layout
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import belongs_to
from gnt_assets.sentinel.mosaic import ChunkJob, ChunkResult, mosaic_chunk_logged

run_chunk = mosaic_chunk_logged
DURATIONS = ("search_s", "load_s", "mask_s", "median_s", "write_s", "total_s")


def demo_aoi_path(storage) -> Path:
    from gnt_assets.sentinel.local import ensure_demo_aoi

    root = storage.root_path
    if root.protocol not in ("", "file", "local"):
        raise ValueError("sentinel_aoi: set an AOI path or bbox; the generated demo AOI needs a local storage root")
    return ensure_demo_aoi(Path(root.path) / "sentinel_source")


def layout_for(cells: gpd.GeoDataFrame) -> CubeLayout:
    first = cells.iloc[0]
    return cube_layout(cells, first["crs"], float(first["resolution"]), int(first["chunk_px"]))


def cube_store(storage, grid: str, backend: str = "zarr", end_month: str = DEFAULT_END_MONTH,
               block_months: int = BLOCK_MONTHS) -> CubeStore:
    suffix = "zarr" if backend == "zarr" else "icechunk"
    return CubeStore(storage.path("sentinel", f"cube_{grid}.{suffix}"), backend, end_month, block_months)


def _result_path(storage, month: str, chunk: str) -> UPath:
    return storage.path("sentinel", "results", month, f"{chunk}.json")


class GridChangedError(InputError):
    """A partition's cell is not in the materialized grid any more (the AOI or grid settings changed)."""


def _cell(grid_table: gpd.GeoDataFrame, chunk: str) -> pd.Series:
    rows = grid_table[grid_table["chunk"] == chunk]
    if rows.empty:
        counts = grid_table.groupby("grid").size().to_dict()
        named = [g for g in counts if belongs_to(chunk, g)]
        now = (f"grid {named[0]!r} now has {counts[named[0]]} other cells" if named
               else f"no grid of the current sentinel_grid is named like it (grids now: {counts})")
        raise GridChangedError(
            f"chunk {chunk!r} is not a cell of the current sentinel_grid: the grid changed after the partition was "
            f"added ({now}; the AOI or the grid settings differ). Re-materialize the grid's chunks or drop the partition")
    return rows.iloc[0]


def grid_of(grid_table: gpd.GeoDataFrame, chunk: str) -> str:
    return str(_cell(grid_table, chunk)["grid"])


def chunk_jobs(storage, grid_table: gpd.GeoDataFrame, stac, url: str, keys: list[tuple[str, str]],
               backend: str = "zarr", end_month: str = DEFAULT_END_MONTH, block_months: int = BLOCK_MONTHS) -> list[ChunkJob]:
    """One job per (month, chunk); each grid's cube is created with its whole monthly axis (or grown by
    whole blocks to the run's months) first, so the mapped jobs only write data and cannot conflict."""
    bands = list(stac.band_assets)
    jobs, layouts = [], {}
    for month, chunk in keys:
        cell = _cell(grid_table, chunk)
        cube = cube_store(storage, cell["grid"], backend, end_month, block_months)
        if cell["grid"] not in layouts:
            layouts[cell["grid"]] = layout_for(grid_table[grid_table["grid"] == cell["grid"]])
            months = sorted({m for m, c in keys if _cell(grid_table, c)["grid"] == cell["grid"]})
            cube.ensure(layouts[cell["grid"]], months, bands)
        jobs.append(ChunkJob(
            chunk=chunk, month=month, query=stac.query(url, tuple(cell.geometry.bounds), date.fromisoformat(month)),
            band_assets=dict(stac.band_assets), scl_asset=stac.scl_asset, layout=layouts[cell["grid"]],
            cube=cube, modifier=stac.modifier(), aws_unsigned=stac.aws_unsigned,
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


def written_objects(storage, grid_table: gpd.GeoDataFrame, keys: list[tuple[str, str]], backend: str = "zarr") -> tuple[int, int]:
    """(chunk objects, stored bytes) of the partitions' regions, for the files/bytes metadata."""
    files = size = 0
    for month, chunk in keys:
        cube, region, _ = stored_region(storage, grid_table, month, chunk, backend)
        status = cube.status(region)
        files, size = files + status.present, size + status.stored_bytes
    return files, size


def result_rows(results: list[ChunkResult]) -> list[dict]:
    return [{"month": r.month, "chunk": r.chunk, "success": r.success, "scenes": r.scenes,
             "valid_share": round(r.valid_share, 4), "attempts": r.attempts, **{k: r.durations.get(k) for k in DURATIONS}, "error": r.error}
            for r in results]


def run_log(storage) -> pd.DataFrame:
    root = storage.path("sentinel", "results")
    records = [json.loads(p.read_text()) for p in sorted(root.glob("*/*.json"))] if root.exists() else []
    frame = pd.DataFrame([{**{k: v for k, v in r.items() if k != "durations"}, **r.get("durations", {})} for r in records])
    columns = ["month", "chunk", "success", "attempts", "scenes", "valid_share", "clear_pixels_unfilled", "minimum", "maximum",
               *DURATIONS, "error"]
    return frame.reindex(columns=columns)


def grid_table_path(storage) -> UPath:
    return storage.path("tables", "sentinel_grid.parquet")


def stored_region(storage, grid_table: gpd.GeoDataFrame, month: str, chunk: str, backend: str = "zarr"):
    """(cube store, integer region, lazily opened data) of one partition in its cube."""
    cell = _cell(grid_table, chunk)
    cube = cube_store(storage, cell["grid"], backend)
    region = cube.region(layout_for(grid_table[grid_table["grid"] == cell["grid"]]), chunk, month)
    cube.require_complete(region, f"{month}|{chunk}")
    return cube, region, cube.open()[VARIABLE].isel(region)
