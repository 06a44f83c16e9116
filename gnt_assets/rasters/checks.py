"""Checks: sources recorded, tiles indexed once with stats that recount, cells cover the grid,
averages inside the source's range."""


import dagster as dg
import numpy as np

from gnt_assets.core.atomic import located, resolve_directory
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import catalog, grids, resample, sources, tiling
from gnt_assets.rasters.assets import GRIDS, raster_catalog, raster_source, raster_tiles, state_folder
from gnt_assets.resources.storage import StorageResource

AVERAGING = ("mean", "bilinear", "nearest", "majority", "min", "max")
SAMPLE_TILES = 3


@dg.asset_check(asset=raster_source, partitions_def=raster_sources, blocking=True,
                description="The source's catalog entry exists and the file still has the registered content hash.")
def source_unchanged(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    info = catalog.load_source(state_folder(storage), context.partition_key)
    current = sources.content_hash(located(info.path, storage.root_path), like=info.content_hash)
    metadata = {"registered": info.content_hash, "current": current}
    if not info.content_hash.startswith(sources.HASH_PREFIX):
        metadata["note"] = "registered before BLAKE3: compared by SHA-256; the next registration stores its BLAKE3"
    return dg.AssetCheckResult(passed=current == info.content_hash, metadata=metadata)


@dg.asset_check(asset=raster_catalog, blocking=True, description="Warns when any source failed registration (the catalog names the file and problem).")
def catalog_without_errors(storage: StorageResource) -> dg.AssetCheckResult:
    table = read_table(state_folder(storage) / "catalog.parquet")
    errors = table[table.error.notna()]
    return dg.AssetCheckResult(passed=errors.empty, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"errors": dg.MetadataValue.md(errors[["key", "error"]].to_markdown(index=False) if len(errors) else "none")})


@dg.asset_check(asset=raster_tiles, partitions_def=raster_sources, blocking=True,
                description="Every (band, tile) of the raster is in the index exactly once and a sample of tiles recounts to the indexed stats.")
def tiles_complete_and_recount(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    info = catalog.load_source(state_folder(storage), context.partition_key)
    folder = state_folder(storage) / "tiles" / info.key
    index = read_table(folder / "index.parquet")
    store = resolve_directory(folder / "tiles.zarr")
    array = tiling.open_array(str(store) if "://" in str(store) else store.path, storage.storage_options(), mode="r")
    size = array.chunks[1]
    expected = {(b, r, c) for b in range(1, info.band_count + 1) for r in range(-(-info.height // size)) for c in range(-(-info.width // size))}
    seen = list(zip(index.band, index.tile_row, index.tile_col, strict=False))
    once = len(seen) == len(set(seen)) and set(seen) == expected
    sample = index.sample(min(SAMPLE_TILES, len(index)), random_state=0)
    mismatched = []
    for row in sample.itertuples():
        tile = array[row.band - 1, row.row_off : row.row_off + row.height, row.col_off : row.col_off + row.width]
        stats = tiling.tile_stats(tile, info.nodata)
        if stats["valid_count"] != row.valid_count or not np.allclose([stats["min"], stats["max"], stats["mean"]], [row.min, row.max, row.mean], equal_nan=True):
            mismatched.append(row.tile_id)
    return dg.AssetCheckResult(passed=once and not mismatched, metadata={
        "tiles": len(seen), "expected": len(expected), "recounted": len(sample), "mismatched": ", ".join(mismatched) or "none"})


def grid_check(spec: grids.GridSpec) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=f"grid_{spec.name}", name="cells_unique_and_valid", blocking=True,
                    description="Cell ids are unique and every cell is a valid, non-empty polygon.")
    def _check(storage: StorageResource) -> dg.AssetCheckResult:
        cells = read_table(state_folder(storage) / "grids" / f"{spec.name}.parquet")
        bad = int((~cells.geometry.is_valid | cells.geometry.is_empty).sum())
        return dg.AssetCheckResult(passed=cells.cell_id.is_unique and bad == 0, metadata={"cells": len(cells), "invalid": bad})

    return _check


def resampled_checks(spec: grids.GridSpec) -> list[dg.AssetChecksDefinition]:
    asset = f"resampled_{spec.name}"

    @dg.asset_check(asset=asset, name="cells_cover_grid", partitions_def=raster_sources, blocking=True,
                    description="Every grid cell touching the raster has exactly one row per method and band.")
    def _cover(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        folder = state_folder(storage)
        info = catalog.load_source(folder, context.partition_key)
        cells = read_table(folder / "grids" / f"{spec.name}.parquet")
        touching = set(resample.cells_in_raster_crs(cells, info.crs, (info.left, info.bottom, info.right, info.top), raster_name=info.path, grid_name=spec.name).cell_id)
        table = read_table(folder / "resampled" / spec.name / f"{info.key}.parquet")
        groups = table.groupby(["band", "method"]).cell_id
        missing = {f"{b}/{m}": len(touching - set(ids)) for (b, m), ids in groups}
        duplicated = int(table.duplicated(["cell_id", "band", "method"]).sum())
        return dg.AssetCheckResult(passed=not any(missing.values()) and duplicated == 0,
                                   metadata={"touching_cells": len(touching), "missing": str(missing), "duplicated": duplicated})

    @dg.asset_check(asset=asset, name="averages_within_source_range", partitions_def=raster_sources, blocking=True,
                    description="Values of averaging and selecting methods lie within the source band's min..max (from the tile index).")
    def _range(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        folder = state_folder(storage)
        index = read_table(folder / "tiles" / context.partition_key / "index.parquet")
        table = read_table(folder / "resampled" / spec.name / f"{context.partition_key}.parquet")
        bounds = index.groupby("band").agg(lo=("min", "min"), hi=("max", "max"))
        rows = table[table.method.isin(AVERAGING) & table.value.notna()].join(bounds, on="band")
        outside = rows[(rows.value < rows.lo - 1e-9 * abs(rows.lo)) | (rows.value > rows.hi + 1e-9 * abs(rows.hi))]
        return dg.AssetCheckResult(passed=outside.empty, metadata={"checked": len(rows), "outside": len(outside)})

    return [_cover, _range]


checks = [source_unchanged, catalog_without_errors, tiles_complete_and_recount]
checks += [grid_check(spec) for spec in GRIDS] + [c for spec in GRIDS for c in resampled_checks(spec)]
