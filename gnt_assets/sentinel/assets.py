"""Sentinel-2 pipeline: AOI -> grid (cells become chunk partitions) -> monthly median cube -> run log."""

import dagster as dg
import geopandas as gpd
import pandas as pd
from pydantic import Field

from gnt_assets.materialization import catalog_metadata, month_span, quicklook_metadata
from gnt_assets.partitions import sentinel_month_chunk
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource
from gnt_assets.sentinel import chunk_runs as pipeline
from gnt_assets.sentinel.aoi import aoi_from_bbox, load_geometry_file
from gnt_assets.sentinel.grid import GridSpec, named_grid, refuse_shared_chunks
from gnt_assets.sentinel.resources import SentinelCubeResource, SentinelStacResource
from gnt_assets.sentinel.tiling import MajorTomTiling, SquareTiling, tiled_grid


class GridConfig(dg.Config):
    name: str
    generator: str  # "square", "majortom" or "custom" (cells from `path`)
    d: int
    overlap: bool = Field(default=False, description="majortom: also the offset cells (Major TOM's overlap), stored as "
                          "a second layer in a store of its own (cube_<name>_overlap)")
    target_crs: str = Field(default="utm", description="'utm': the AOI's UTM zone; or any CRS, e.g. EPSG:3035")
    res_m: float = 20
    chunks_per_side: int = Field(default=1, description="zarr chunks per cell side")
    chunk_deg: float = Field(default=2.0, description="majortom: a chunk (partition) is a chunk_deg lon/lat box whose "
                             "cells (each stored as its own image, on its exact UTM geobox) are fanned out inside the run")
    path: str = Field(default="", description="custom: a vector file (GeoPackage, GeoParquet, ...) of cells")
    layer: str | None = None
    id_column: str = "grid_id"
    chunk_km: float = Field(default=0.0, description="square: > 0 makes each chunk a super-tile of about chunk_km "
                            "(its cells enumerated and fanned out inside the run; 200 for a continent); 0: a chunk per cell")
    shard_cells: int = Field(default=1, description="square with chunk_km: cells per zarr v3 shard side; > 1 makes a "
                             "shard of cells the unit a task computes and writes (16 for a continent: one object per "
                             "15 km shard and month); must divide the cells of a chunk side")


class AoiConfig(dg.Config):
    path: str = Field(default="", description="Any OGR-readable file (GeoPackage, Shapefile, GeoJSON, KML); empty: the generated demo AOI.")
    layer: str | None = None
    bbox: list[float] | None = None


class SentinelGridConfig(dg.Config):
    grids: list[GridConfig] = [
        {"name": "square", "generator": "square", "d": 960, "target_crs": "utm", "res_m": 20.0},
        {"name": "majortom", "generator": "majortom", "d": 1000, "res_m": 20.0},
    ]


@dg.asset(group_name="sentinel", io_manager_key="geoparquet_io_manager")
def sentinel_aoi(config: AoiConfig, storage: StorageResource) -> gpd.GeoDataFrame:
    """The area of interest: every feature of the file (or the bbox) unioned into one EPSG:4326 geometry."""
    if config.bbox:
        geometry, source = aoi_from_bbox(tuple(config.bbox)), f"bbox {config.bbox}"
    else:
        path = config.path or str(pipeline.demo_aoi_path(storage))
        geometry, source = load_geometry_file(path, config.layer or (None if config.path else "aoi")), path
    frame = gpd.GeoDataFrame({"source": [source]}, geometry=[geometry], crs="EPSG:4326")
    frame["area_km2"] = frame.to_crs(frame.estimate_utm_crs()).area / 1e6
    return frame


@dg.asset(group_name="sentinel", io_manager_key="geoparquet_io_manager")
def sentinel_grid(config: SentinelGridConfig, sentinel_aoi: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Grid cells over the AOI, one row per cell of each cell grid (pandera-checked) and one per chunk of each
    tiled grid (square with chunk_km, Major TOM); the chunk sensor turns each row into a sentinel_chunk partition."""
    aoi = sentinel_aoi.geometry.iloc[0]
    grids = [
        tiled_grid(SquareTiling(g.name, g.d, g.res_m, g.chunk_km * 1000, g.target_crs, g.chunks_per_side, g.shard_cells), aoi)
        if g.generator == "square" and g.chunk_km > 0 else
        tiled_grid(MajorTomTiling(g.name, g.d, g.res_m, g.overlap, g.chunk_deg, g.chunks_per_side), aoi)
        if g.generator == "majortom" else
        named_grid(aoi, g.name, g.generator, GridSpec(d=g.d, target_crs=g.target_crs, res_m=g.res_m, id_column=g.id_column),
                   g.chunks_per_side, g.path, g.layer)
        for g in config.grids
    ]
    cells = gpd.GeoDataFrame(pd.concat(grids, ignore_index=True), crs="EPSG:4326")
    refuse_shared_chunks(cells)
    for _grid, group in cells.groupby("grid"):
        if not pipeline.is_tiled(group.iloc[0]):  # tiled grids are disjoint by construction
            pipeline.layout_for(group)  # refuses a grid whose cells would share a zarr chunk
    return cells


class MosaicConfig(dg.Config):
    cell_attempts: int = Field(default=6, gt=0, description="Tries per cell for transient failures (search, read, "
                               "write) before the cell, and so its chunk, counts as failed (the seed's retries=5).")
    retry_backoff_s: float = Field(default=2.0, ge=0, description="Wait before the second try, doubled after each.")


def _result_metadata(results: list) -> dict:
    """Scenes, valid share, elapsed time and the per-chunk result log of a run."""
    rows = pipeline.result_rows(results)
    columns = [dg.TableColumn(name, "string") for name in rows[0]] if rows else []
    return {
        "scenes": dg.MetadataValue.int(sum(r.scenes for r in results)),
        "valid_share": dg.MetadataValue.float(round(sum(r.valid_share for r in results) / max(1, len(results)), 4)),
        "elapsed_s": dg.MetadataValue.float(round(float(max((r.durations.get("total_s", 0.0) for r in results), default=0.0)), 3)),
        "chunk_results": dg.MetadataValue.table(
            [dg.TableRecord({k: str(v) for k, v in row.items()}) for row in rows], schema=dg.TableSchema(columns)),
    }


def _catalog_partition(context, storage: StorageResource, grid: gpd.GeoDataFrame, cell, partition: str, month: str) -> dict:
    """The partition's STAC item, for its month: the cube holding its cells (a Major TOM chunk: its first cell's
    own store, each cell being an image of its own)."""
    _, first, _ = pipeline.partition_stores(storage, grid, cell["chunk"])[0]
    return catalog_metadata(context, storage.root_path, {"cube": first.path}, partition=partition, times=month_span(month),
                            footprint=tuple(float(b) for b in cell.geometry.bounds))


@dg.asset(
    group_name="sentinel",
    partitions_def=sentinel_month_chunk,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=50),
    ins={"sentinel_grid": dg.AssetIn()},
)
def sentinel_mosaic(
    context: dg.AssetExecutionContext,
    config: MosaicConfig,
    sentinel_grid: gpd.GeoDataFrame,
    storage: StorageResource,
    compute: DaskComputeResource,
    sentinel_stac: SentinelStacResource,
    sentinel_cube: SentinelCubeResource,
) -> dg.MaterializeResult:
    """Cloud-masked (SCL 4/5) monthly median reflectance of one grid cell, written as the cell's
    region of its grid's zarr cube; a run of many partitions maps the cells on the compute cluster.
    A cell failing after its retries fails only its own partition: the others are materialized, and
    a rerun of the failed partition (or of one whose run was killed) redoes only the cells its ledger does not
    record as written."""
    parsed = [sentinel_month_chunk.get_partition_key_from_str(str(k)) for k in context.partition_keys]
    keys = [(k.keys_by_dimension["month"], k.keys_by_dimension["chunk"]) for k in parsed]
    context.log.info(f"{len(keys)} chunk x month partitions")
    with sentinel_stac.api_url() as url:
        jobs, owners = pipeline.plan_jobs(storage, sentinel_grid, sentinel_stac, url, keys, sentinel_cube.backend,
                                          sentinel_cube.end_month, sentinel_cube.block_months,
                                          config.cell_attempts, config.retry_backoff_s)
        jobs, owners, reused, reused_owners = pipeline.resume(storage, jobs, owners)
        if reused:
            context.log.info(f"{len(reused)} cells kept from the failed partitions' last run, {len(jobs)} to run")
        with compute.get_client() as client:  # each finished cell recorded at once: a killed run's rerun keeps it
            cells = [*pipeline.run_cells(client, jobs, lambda i, result: pipeline.record_cell(storage, result, owners[i])), *reused]
    owners = [*owners, *reused_owners]
    pipeline.record_ledgers(storage, cells, owners)
    results = pipeline.partition_results(cells, owners)
    for result in results:
        pipeline.record_result(storage, result)
        context.log.info(f"{result.month} {result.chunk}: success={result.success} scenes={result.scenes} {result.error or ''}")
    failed = pipeline.failed_cells(cells, owners)
    done = [(key, month, chunk) for key, (month, chunk) in zip(parsed, keys, strict=True) if (month, chunk) not in failed]
    run, per_partition = _partition_metadata(context, storage, sentinel_grid, sentinel_cube.backend, done,
                                             [r for r in results if (r.month, r.chunk) not in failed])
    if failed:
        for key, _month, _chunk in done:  # the run fails, but these partitions are written
            context.log_event(dg.AssetMaterialization(context.asset_key, partition=str(key),
                                                      metadata={**run, **per_partition[str(key)]}))
        raise dg.Failure(
            description="; ".join(f"month {m} chunk {c}: {len(ids)} cell(s) failed after retries: {', '.join(ids)}"
                                  for (m, c), ids in failed.items()),
            metadata={"failed_cells": dg.MetadataValue.json({f"{m}|{c}": ids for (m, c), ids in failed.items()}),
                      "errors": dg.MetadataValue.text("; ".join(f"{r.month} {r.chunk}: {r.error}" for r in results if r.error)),
                      "materialized_partitions": dg.MetadataValue.int(len(done))})
    for item in per_partition.values():
        run |= item
    return dg.MaterializeResult(metadata=run)


def _partition_metadata(context, storage: StorageResource, grid: gpd.GeoDataFrame, backend: str,
                        done: list, results: list) -> tuple[dict, dict]:
    """The run's metadata (objects, bytes, the result log) and, per written partition, its STAC item's."""
    files, size = pipeline.written_objects(storage, grid, [(m, c) for _, m, c in done], backend)
    run = {"files": dg.MetadataValue.int(files), "bytes": dg.MetadataValue.int(size), **_result_metadata(results)}
    if len(results) == 1 and results[0].look is not None:
        run.update(quicklook_metadata(results[0].look, title="rgb", variable="Sentinel-2 red, green, blue monthly median"))
    per_partition = {str(key): _catalog_partition(context, storage, grid, grid[grid["chunk"] == chunk].iloc[0], str(key), month)
                     if backend == "zarr" else {} for key, month, chunk in done}
    return run, per_partition


@dg.asset(group_name="sentinel", io_manager_key="geoparquet_io_manager", deps=[sentinel_mosaic])
def sentinel_run_log(storage: StorageResource) -> pd.DataFrame:
    """Per month and chunk, the latest attempt: success, scenes used, valid share and the time spent
    in search, load, mask, median and write (the per-chunk result CSV as a table)."""
    return pipeline.run_log(storage)
