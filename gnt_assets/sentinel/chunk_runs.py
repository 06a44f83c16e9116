"""From partition keys to chunk jobs and back: cube paths, store initialisation, per-chunk result records,
and the per-cell ledger that lets a rerun of a failed partition redo only its failed or missing cells."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
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
from gnt_assets.sentinel.tiling import CellStore, row_cells

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
               block_months: int = BLOCK_MONTHS, path: str = "") -> CubeStore:
    """The cube ``cube_<grid>``, or a store of its own under ``cube_<grid>/`` (a Major TOM cell's image:
    ``<chunk>/<cell>``)."""
    suffix = "zarr" if backend == "zarr" else "icechunk"
    if path:
        return CubeStore(storage.path("sentinel", f"cube_{grid}", f"{path}.{suffix}"), backend, end_month, block_months)
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


def cube_of(row: pd.Series) -> str:
    """The name of the cube a partition writes: its grid's, or for a tiled grid its chunk's (zone cube or layer store)."""
    return str(row["cube"]) if is_tiled(row) else str(row["grid"])


def is_tiled(row: pd.Series) -> bool:
    """A row of a tiled grid (one row per coarse chunk, its cells enumerated on demand)."""
    return isinstance(row.get("tiling"), str) and bool(row.get("tiling"))


def partition_cells(grid_table: gpd.GeoDataFrame, chunk: str, layouts: dict | None = None) -> Mapping[str, CellStore]:
    """Per cell of one partition, where it is written: a cell grid's cell in its grid's cube (the grid's whole
    layout, cached in ``layouts`` per grid), or a tiled chunk's cells (see ``tiling.row_cells``)."""
    row = _cell(grid_table, chunk)
    if is_tiled(row):
        return row_cells(row)
    layouts = {} if layouts is None else layouts
    grid = str(row["grid"])
    if grid not in layouts:
        layouts[grid] = layout_for(grid_table[grid_table["grid"] == grid])
    return {chunk: CellStore(grid, "", layouts[grid])}


def partition_stores(storage, grid_table: gpd.GeoDataFrame, chunk: str, backend: str = "zarr"
                     ) -> list[tuple[str, CubeStore, CellStore]]:
    """(cell, its store, where in it) per cell of one partition."""
    return [(cell, cube_store(storage, place.cube, backend, path=place.path), place)
            for cell, place in partition_cells(grid_table, chunk).items()]


def plan_jobs(storage, grid_table: gpd.GeoDataFrame, stac, url: str, keys: list[tuple[str, str]],
              backend: str = "zarr", end_month: str = DEFAULT_END_MONTH, block_months: int = BLOCK_MONTHS,
              attempts: int = 6, backoff_s: float = 2.0) -> tuple[list[ChunkJob], list[tuple[str, str]]]:
    """The jobs and, per job, its partition (month, chunk): a tiled chunk fans out into one job per cell, each
    carrying only its own cell's region (a Major TOM cell: its own image). Each shared cube is created with its
    whole monthly axis (or grown by whole blocks to the run's months) here, before the jobs run, so the mapped jobs
    only write data and cannot conflict; a cell's own store is created the same way by its job, its one writer
    (on the cluster: tens of thousands of stores per chunk would take the run process an hour)."""
    bands = list(stac.band_assets)
    layouts: dict = {}
    cells = {chunk: partition_cells(grid_table, chunk, layouts) for chunk in dict.fromkeys(c for _, c in keys)}
    stores: dict[tuple[str, str], tuple[CubeStore, CubeLayout, set[str]]] = {}  # (cube, path) -> (store, layout, months)
    for month, chunk in keys:
        for place in cells[chunk].values():
            cube = cube_store(storage, place.cube, backend, end_month, block_months, place.path)
            stores.setdefault((place.cube, place.path), (cube, place.layout, set()))[2].add(month)
    for (_, path), (cube, layout, months) in stores.items():
        if not path:
            cube.ensure(layout, sorted(months), bands)
    jobs, owners = [], []
    for month, chunk in keys:
        row = _cell(grid_table, chunk)
        for cell, place in cells[chunk].items():
            cube, _, months = stores[(place.cube, place.path)]
            bounds = tuple(place.layout.cell_geobox(cell).geographic_extent.boundingbox) if is_tiled(row) else tuple(row.geometry.bounds)
            jobs.append(ChunkJob(
                chunk=cell, month=month, query=stac.query(url, bounds, date.fromisoformat(month)),
                band_assets=dict(stac.band_assets), scl_asset=stac.scl_asset, layout=place.layout, cube=cube,
                modifier=stac.modifier(), aws_unsigned=stac.aws_unsigned, attempts=attempts, backoff_s=backoff_s,
                ensure_months=tuple(sorted(months)) if place.path else (),
            ))
            owners.append((month, chunk))
    return jobs, owners


def run_cells(client, jobs: list[ChunkJob], on_result=None) -> list[ChunkResult]:
    """Each job mapped on the cluster, results in the jobs' order; ``on_result(index, result)`` is called as each
    cell finishes (the per-cell progress record). A task lost with its worker (KilledWorker, a crash outside
    the retried work) becomes that cell's failed result instead of failing every partition of the run."""
    from distributed import as_completed

    futures = client.map(run_chunk, jobs, pure=False)
    index_of = {future.key: index for index, future in enumerate(futures)}
    results: list[ChunkResult | None] = [None] * len(jobs)
    for future in as_completed(futures):
        index = index_of[future.key]
        try:
            result = future.result()
        except Exception as error:
            result = ChunkResult(chunk=jobs[index].chunk, month=jobs[index].month, success=False,
                                 error=f"{type(error).__name__} on the compute cluster: {error}")
        results[index] = result
        if on_result is not None:
            on_result(index, result)
    return results


def _ledger_path(storage, month: str, chunk: str) -> UPath:
    return storage.path("sentinel", "ledger", month, f"{chunk}.json")


def _progress_folder(storage, month: str, chunk: str) -> UPath:
    """One record per finished cell of a run in progress: what a run killed before its ledger leaves behind."""
    return storage.path("sentinel", "ledger", month, f"{chunk}.cells")


def record_cell(storage, result: ChunkResult, owner: tuple[str, str]) -> None:
    """A finished cell's record, written (atomically) as it finishes, so a rerun after a kill keeps it."""
    atomic_write_text(_progress_folder(storage, *owner) / f"{result.chunk}.json", json.dumps(_cell_record(result)), durable=False)


def _read_ledger(storage, owner: tuple[str, str]) -> dict:
    """The partition's ledger: a run killed before its end counts as incomplete, with the cells it recorded."""
    progress = _progress_folder(storage, *owner)
    if progress.exists():
        cells = {path.stem: json.loads(path.read_text()) for path in progress.iterdir() if path.suffix == ".json"}
        return {"complete": False, "cells": cells}
    path = _ledger_path(storage, *owner)
    return json.loads(path.read_text()) if path.exists() else {"complete": True, "cells": {}}


def _cell_record(result: ChunkResult) -> dict:
    return {k: v for k, v in dataclasses.asdict(result).items() if k != "look"}


def resume(storage, jobs: list[ChunkJob], owners: list[tuple[str, str]]
           ) -> tuple[list[ChunkJob], list[tuple[str, str]], list[ChunkResult], list[tuple[str, str]]]:
    """(jobs to run, their owners, reused results, their owners). A partition whose last run failed keeps the
    cells its ledger records as written, when their regions are still complete in the cube; a partition whose
    last run succeeded (or that never ran) redoes every cell, so re-materializing it refreshes it."""
    ledgers: dict[tuple[str, str], dict] = {}
    run, run_owners, reused, reused_owners = [], [], [], []
    for job, owner in zip(jobs, owners, strict=True):
        if owner not in ledgers:
            ledgers[owner] = _read_ledger(storage, owner)
        ledger = ledgers[owner]
        record = ledger["cells"].get(job.chunk)
        if not ledger["complete"] and record and record["success"] and \
                job.cube.status(job.cube.region(job.layout, job.chunk, job.month)).complete:
            reused.append(ChunkResult(**record))
            reused_owners.append(owner)
        else:
            run.append(job)
            run_owners.append(owner)
    return run, run_owners, reused, reused_owners


def record_ledgers(storage, results: list[ChunkResult], owners: list[tuple[str, str]]) -> None:
    """Per partition, every cell's latest result (one JSON per chunk and month, replaced atomically)."""
    grouped: dict[tuple[str, str], dict[str, dict]] = {}
    for result, owner in zip(results, owners, strict=True):
        grouped.setdefault(owner, {})[result.chunk] = _cell_record(result)
    for (month, chunk), cells in grouped.items():
        ledger = {"complete": all(c["success"] for c in cells.values()), "cells": cells}
        atomic_write_text(_ledger_path(storage, month, chunk), json.dumps(ledger))
        progress = _progress_folder(storage, month, chunk)
        if progress.exists():  # the run's own records: the ledger now holds them
            progress.fs.rm(progress.path, recursive=True)


def failed_cells(results: list[ChunkResult], owners: list[tuple[str, str]]) -> dict[tuple[str, str], list[str]]:
    """Per partition with a failed cell, the failed cell ids."""
    failed: dict[tuple[str, str], list[str]] = {}
    for result, owner in zip(results, owners, strict=True):
        if not result.success:
            failed.setdefault(owner, []).append(result.chunk)
    return failed


def partition_results(results: list[ChunkResult], owners: list[tuple[str, str]]) -> list[ChunkResult]:
    """One result per partition: a cell partition's own, or a tiled chunk's cells combined (success if all
    succeeded; scenes the most any cell saw; valid share the mean of the cells' shares, as the checks read it)."""
    grouped: dict[tuple[str, str], list[ChunkResult]] = {}
    for result, owner in zip(results, owners, strict=True):
        grouped.setdefault(owner, []).append(result)
    combined = []
    for (month, chunk), cells in grouped.items():
        if len(cells) == 1 and cells[0].chunk == chunk:
            combined.append(cells[0])
            continue
        failed = [c for c in cells if not c.success]
        lows = [c.minimum for c in cells if c.minimum is not None]
        highs = [c.maximum for c in cells if c.maximum is not None]
        combined.append(ChunkResult(
            chunk=chunk, month=month, success=not failed, scenes=max(c.scenes for c in cells),
            valid_share=sum(c.valid_share for c in cells) / len(cells),
            clear_pixels_unfilled=sum(c.clear_pixels_unfilled for c in cells),
            minimum=min(lows) if lows else None, maximum=max(highs) if highs else None,
            durations={k: round(sum(c.durations.get(k, 0.0) for c in cells), 3) for k in DURATIONS},
            error="; ".join(f"cell {c.chunk}: {c.error}" for c in failed[:5]) or None,
            attempts=max(c.attempts for c in cells)))
    return combined


def record_result(storage, result: ChunkResult) -> None:
    atomic_write_text(_result_path(storage, result.month, result.chunk), json.dumps(_cell_record(result)))


def read_result(storage, month: str, chunk: str) -> dict:
    path = _result_path(storage, month, chunk)
    if not path.exists():
        raise FileNotFoundError(f"month {month} chunk {chunk}: no mosaic result recorded at {path}")
    return json.loads(path.read_text())


def written_objects(storage, grid_table: gpd.GeoDataFrame, keys: list[tuple[str, str]], backend: str = "zarr") -> tuple[int, int]:
    """(chunk objects, stored bytes) of the partitions' regions, for the files/bytes metadata."""
    files = size = 0
    for month, chunk in keys:
        for cube, region in partition_regions(storage, grid_table, month, chunk, backend):
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


def partition_regions(storage, grid_table: gpd.GeoDataFrame, month: str, chunk: str, backend: str = "zarr"
                      ) -> list[tuple[CubeStore, dict[str, slice]]]:
    """(store, integer region) per cell of one partition."""
    return [(cube, cube.region(place.layout, cell, month)) for cell, cube, place in partition_stores(storage, grid_table, chunk, backend)]


def stored_values(storage, grid_table: gpd.GeoDataFrame, month: str, chunk: str, backend: str = "zarr") -> list:
    """The partition's stored reflectance (CF-decoded), one (1, y, x, band) array per cell (Major TOM cells
    differ in size)."""
    opened: dict[str, object] = {}
    values = []
    for cube, region in partition_regions(storage, grid_table, month, chunk, backend):
        if str(cube.path) not in opened:
            opened[str(cube.path)] = cube.open()[VARIABLE]
        values.append(opened[str(cube.path)].isel(region).values)
    return values
