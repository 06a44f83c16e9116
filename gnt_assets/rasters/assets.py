"""Rasters pipeline: source -> catalog; source -> tiles; grid -> resampled (per grid).

Partitioning: every per-raster asset uses the dynamic ``raster_sources`` partitions; each
grid is its own unpartitioned asset and has its own ``resampled_<grid>`` asset partitioned
by raster. So the UI shows a raster x grid matrix as one row per grid, a new grid in
grids.yaml is a new asset (no re-keying of existing partitions), and a grid change marks
exactly that grid's resampled partitions stale.
"""


import os

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from upath import UPath

from gnt_assets.core.atomic import atomic_directory, located
from gnt_assets.core.errors import InputError
from gnt_assets.core.quicklook import choropleth, quicklook
from gnt_assets.core.rio import open_raster
from gnt_assets.io_managers.geoparquet import read_table, write_table
from gnt_assets.materialization import catalog_metadata, output_metadata, quicklook_metadata
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import catalog, cell_layer, grids, resample, sources, square_raster, states, tiling
from gnt_assets.rasters.resources import RasterFolderResource
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource
from gnt_assets.retries import TRANSIENT_RETRY, failure_for

CODE_VERSION = "1"


def state_folder(storage: StorageResource) -> UPath:
    return storage.path("rasters")


@dg.asset(group_name="rasters", partitions_def=raster_sources, code_version=CODE_VERSION, retry_policy=TRANSIENT_RETRY)
def raster_source(context: dg.AssetExecutionContext, storage: StorageResource, raster_folder: RasterFolderResource) -> dg.MaterializeResult:
    """A registered raster, validated (opens, CRS, finite geotransform, nodata fits the dtype) and hashed.
    Its data version hashes the file's content with its effective nodata, kind and sidecar metadata, so
    downstream partitions go stale when the bytes or what the sidecar says about them change."""
    key = context.partition_key
    found = sources.discover(raster_folder.folder_path(storage.root_path), raster_folder.registry_path(storage.root_path))
    if key not in found:
        error = sources.RasterSourceError(f"raster {key!r} is neither in {raster_folder.folder_path(storage.root_path)} nor in the registry")
        raise failure_for(error) from error
    states.set_state(state_folder(storage), key, "validating")
    try:
        info = sources.inspect(found[key], storage.root_path)
    except sources.RasterSourceError as error:
        catalog.record_error(state_folder(storage), key, found[key].path, str(error))
        states.set_state(state_folder(storage), key, "error", str(error))
        raise failure_for(error) from error  # bad input: fails at once, not after the transient retries
    catalog.record_source(state_folder(storage), info)
    states.set_state(state_folder(storage), key, "pending", "validated; waiting for raster_tiles")
    with open_raster(located(info.path, storage.root_path)) as src:
        scale = max(1, max(src.width, src.height) // 512)
        preview = src.read(1, out_shape=(src.height // scale or 1, src.width // scale or 1))
    return dg.MaterializeResult(
        data_version=dg.DataVersion(sources.data_version(info)),
        metadata={
            **output_metadata([state_folder(storage) / "sources" / f"{key}.json"]),
            **quicklook_metadata(quicklook(preview, nodata=info.nodata, crs=info.crs, variable="band 1")),
            "path": info.path, "kind": info.kind, "dtype": info.dtype, "bands": info.band_count,
            "pixel_size": info.pixel_size_x, "content_hash": info.content_hash,
        },
    )


@dg.asset(group_name="rasters", deps=[raster_source], code_version=CODE_VERSION, retry_policy=TRANSIENT_RETRY)
def raster_catalog(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Every source with path, CRS, pixel size, dtype, nodata, extent, bands, hash, its state (pending, validating,
    tiling, indexing, ready, error, archived) and last error (GeoParquet, pandera-checked); failed registrations
    never replace a good entry. Rebuilt after any registration, failed ones included."""
    table = catalog.build_catalog(state_folder(storage), context.instance.get_dynamic_partitions(raster_sources.name))
    path = state_folder(storage) / "catalog.parquet"
    write_table(table, path)
    counts = {state: int((table.status == state).sum()) for state in states.STATES}
    return dg.MaterializeResult(metadata={
        **output_metadata([path]), "sources": len(table), **counts, "errors": counts["error"],
        "table": dg.MetadataValue.md(table.drop(columns="geometry")[["key", "status", "status_since", "kind", "crs", "error"]].to_markdown(index=False)),
    })


@dg.asset(group_name="rasters", partitions_def=raster_sources, deps=[raster_source], code_version=CODE_VERSION, retry_policy=TRANSIENT_RETRY)
def raster_tiles(context: dg.AssetExecutionContext, storage: StorageResource, compute: DaskComputeResource,
                 raster_folder: RasterFolderResource) -> dg.MaterializeResult:
    """The raster as a zarr dataset with one chunk per tile (one GET per tile; CF attributes and a spatial_ref grid mapping, so
    xarray/odc-geo and GDAL place it), and a GeoParquet tile index with window, bounds and
    min/max/mean/std/nodata/valid counts; tiles run in parallel on Dask.
    Quick look: band 1 mean per tile (one pixel per tile)."""
    info = catalog.load_source(state_folder(storage), context.partition_key)
    folder = state_folder(storage) / "tiles" / info.key
    with states.failing_as_error(state_folder(storage), info.key):
        states.set_state(state_folder(storage), info.key, "tiling")
        if not located(info.path, storage.root_path).exists():  # moved or deleted since registration: retrying cannot help
            error = sources.RasterSourceError(f"{info.path}: registered raster {info.key!r} is gone; put it back or register it again")
            raise failure_for(error) from error
        # Built aside and published whole: a failed or killed run leaves the previous store as it was, and
        # the next run of the same content takes the build up where it stopped (tiles already written are kept).
        with atomic_directory(folder / "tiles.zarr", resume=tiling.resume_token(info, raster_folder.tile_size)) as staged:
            tasks = tiling.tile_tasks(info, staged, storage.storage_options(), raster_folder.tile_size)
            done = tiling.finished_tiles(staged)
            todo = [task for task in tasks if task.tile_id not in done]
            if done:
                context.log.info(f"{info.key}: resuming, {len(tasks) - len(todo)} of {len(tasks)} tiles already written")
            with compute.get_client() as client:
                rows = [done[task.tile_id] for task in tasks if task.tile_id in done] + client.gather(
                    client.map(tiling.write_tile, todo, pure=False))
            tiling.drop_progress(staged)
        states.set_state(state_folder(storage), info.key, "indexing", f"{len(rows)} tiles written; writing the tile index")
        frame = pd.DataFrame(rows)
        index = gpd.GeoDataFrame(frame, geometry=shapely.box(frame.left, frame.bottom, frame.right, frame.top), crs=info.crs)
        write_table(index.sort_values("tile_id").reset_index(drop=True), folder / "index.parquet")
        states.set_state(state_folder(storage), info.key, "ready", f"{len(rows)} tiles indexed")
    first = index[index.band == 1]
    means = np.full((int(first.tile_row.max()) + 1, int(first.tile_col.max()) + 1), np.nan)
    means[first.tile_row, first.tile_col] = first["mean"]
    return dg.MaterializeResult(metadata={
        **output_metadata([folder]), **catalog_metadata(context, storage.root_path, {"tiles": folder / "tiles.zarr", "index": folder / "index.parquet"}),
        **quicklook_metadata(quicklook(means, crs=info.crs, variable="band 1 mean per tile"), title="tile_means"),
        "tiles": len(rows), "tile_size": raster_folder.tile_size,
        "valid_pixels": int(index.valid_count.sum()), "nodata_pixels": int(index.nodata_count.sum()),
        "tiles_resumed": len(tasks) - len(todo),
    })


class ResampleConfig(dg.Config):
    methods: list[str] = []  # empty: the defaults for the raster's kind


def grid_asset(spec: grids.GridSpec, study_area) -> dg.AssetsDefinition:
    @dg.asset(name=f"grid_{spec.name}", group_name="rasters", retry_policy=TRANSIENT_RETRY, code_version=f"{CODE_VERSION}-{spec.kind}-{spec.resolution_m}-{study_area}",
              description=f"{spec.kind} grid {spec.name!r} at {spec.resolution_m:g} m over the study area {study_area} (GeoParquet of cells).")
    def _grid(storage: StorageResource) -> dg.MaterializeResult:
        cells = grids.grid_cells(spec, study_area)
        path = state_folder(storage) / "grids" / f"{spec.name}.parquet"
        write_table(cells, path)
        digest = resample.grid_content_hash(cells)
        return dg.MaterializeResult(data_version=dg.DataVersion(digest),
                                    metadata={**output_metadata([path]), "cells": len(cells), "crs": str(cells.crs), "grid_hash": digest})

    return _grid


def resampled_asset(spec: grids.GridSpec) -> dg.AssetsDefinition:
    @dg.asset(name=f"resampled_{spec.name}", group_name="rasters", partitions_def=raster_sources, retry_policy=TRANSIENT_RETRY,
              deps=[raster_source, raster_tiles, f"grid_{spec.name}"], code_version=f"{CODE_VERSION}-{resample.ALGORITHM_VERSION}",
              description=f"Raster values per cell of grid {spec.name!r} (cell_id, band, method, value, valid_fraction) "
                          "with exact coverage-weighted area methods; cached by source hash x grid x method x band.")
    def _resampled(context: dg.AssetExecutionContext, config: ResampleConfig, storage: StorageResource,
                   raster_folder: RasterFolderResource) -> dg.MaterializeResult:
        folder = state_folder(storage)
        info = catalog.load_source(folder, context.partition_key)
        cells = read_table(folder / "grids" / f"{spec.name}.parquet")
        methods = config.methods or list(sources.DEFAULT_METHODS[info.kind])
        store = resample.ResultStore(folder / "cache")
        try:
            table, counts = resample.resample(info, cells, spec.name, methods, store, memory_limit_mb=raster_folder.memory_limit_mb,
                                            log=context.log.info, like=storage.root_path)
        except InputError as error:  # a grid/raster combination that cannot work: fails at once, not after the retries
            raise failure_for(error) from error
        warnings = counts.pop("warnings")
        for warning in warnings:
            context.log.warning(f"{info.key} on {spec.name}: {warning}")
        out = gpd.GeoDataFrame(table.merge(cells[["cell_id", "geometry"]], on="cell_id"), geometry="geometry", crs=cells.crs)
        path = folder / "resampled" / spec.name / f"{info.key}.parquet"
        write_table(out, path)
        written = {"table": path, "gpkg": cell_layer.write_cell_layer(out, path.with_suffix(".gpkg"))}
        if spec.kind == "square":  # also a raster on the grid: a zarr dataset and a COG per method and band
            written["zarr"] = square_raster.write_square_zarr(out, folder / "resampled" / spec.name / f"{info.key}.zarr")
            for cog in square_raster.write_square_cogs(out, folder / "resampled" / spec.name / "cog" / info.key):
                written[f"cog_{cog.stem}"] = cog
        first = out[(out.band == 1) & (out.method == methods[0])]
        return dg.MaterializeResult(metadata={
            **output_metadata(list(written.values())), **catalog_metadata(context, storage.root_path, written),
            "cells": int(first.cell_id.nunique()), "methods": ", ".join(methods),
            **counts, "point_method_warnings": "; ".join(warnings) or "none", **{f"cache_{k}": v for k, v in store.stats().items()},
            **quicklook_metadata(choropleth(first.geometry.values, first["value"], variable=f"band 1 {methods[0]} per cell", crs=str(cells.crs)), title="choropleth"),
            "mean_valid_fraction": float(np.nanmean(first.valid_fraction)) if len(first) else 0.0,
        })

    return _resampled


# The study area and grids: the file named by GNT_RASTER_GRIDS, else the package's grids.yaml.
STUDY_AREA, GRIDS = grids.load_registry(os.environ.get("GNT_RASTER_GRIDS") or grids.REGISTRY)
grid_assets = [grid_asset(spec, STUDY_AREA) for spec in GRIDS]
resampled_assets = [resampled_asset(spec) for spec in GRIDS]
