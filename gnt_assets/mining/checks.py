"""Mining I checks: blocking ERROR where downstream would break, WARN for soft findings."""

import dagster as dg
import numpy as np
import pandas as pd
from pandera.errors import SchemaErrors

from gnt_assets.core.zarr_regions import open_store, store_exists
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.mining.assets import (
    landsat_exports,
    landsat_regions,
    mine_polygons,
    mining_clusters,
    mining_export_status,
    status_path,
)
from gnt_assets.mining.clusters import SCHEMA
from gnt_assets.mining.exports import ledger_path, read_ledger, without_skipped
from gnt_assets.mining.regions import BANDS, VARIABLE, region_path, tile_array, tile_chunks_present
from gnt_assets.mining.resources import DriveResource
from gnt_assets.partitions import mining_country, mining_country_year
from gnt_assets.resources.storage import StorageResource


def _clusters(storage: StorageResource, country: str) -> pd.DataFrame:
    return read_table(storage.path("tables", "mining_clusters", f"{country}.parquet"))


def _country_year(context) -> tuple[str, str]:
    return tuple(str(context.partition_key).split("|"))


@dg.asset_check(asset=mine_polygons, description="Rejected rows of the polygon file (soft: they are kept in the rejects file).")
def polygons_rejected_rows(storage: StorageResource) -> dg.AssetCheckResult:
    rejects = read_table(storage.path("mining", "rejects", "mine_polygons.parquet"))
    reasons = rejects["reason"].value_counts().to_dict() if len(rejects) else {}
    rows = "\n".join(f"- {getattr(r, 'source', 'polygon file')} row {r.mine_id}: {r.reason}" for r in rejects.itertuples())
    return dg.AssetCheckResult(passed=not len(rejects), severity=dg.AssetCheckSeverity.WARN,
                               metadata={"rejected": len(rejects), "reasons": dg.MetadataValue.json(reasons),
                                         "rows": dg.MetadataValue.md(rows)})


@dg.asset_check(asset=mining_clusters, partitions_def=mining_country, blocking=True,
                description="Clusters match the pandera schema and hold every mine of the country exactly once.")
def clusters_partition_the_mines(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    country = str(context.partition_key)
    clusters = _clusters(storage, country)
    frame = pd.DataFrame(clusters.drop(columns="geometry"))
    try:
        SCHEMA.validate(frame, lazy=True)
    except SchemaErrors as errors:
        return dg.AssetCheckResult(passed=False, metadata={"schema_errors": dg.MetadataValue.md(errors.failure_cases.head(20).to_markdown())})
    mines = read_table(storage.path("tables", "mine_polygons.parquet"))
    expected = sorted(mines.loc[mines["ISO3_CODE"] == country, "mine_id"].tolist())
    got = sorted(int(i) for ids in frame["mine_ids"] for i in ids)
    return dg.AssetCheckResult(passed=got == expected, metadata={"mines": len(expected), "in_clusters": len(got)})


@dg.asset_check(asset=landsat_exports, partitions_def=mining_country_year, blocking=True,
                description="One export task per exportable cluster, no description twice.")
def exports_one_task_per_cluster(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    country, year = _country_year(context)
    records = read_ledger(ledger_path(storage.root_path, country, year))
    clusters = _clusters(storage, country)
    expected = set(clusters["cluster_id"])
    descriptions = [r.spec.description for r in records]
    passed = {r.spec.cluster_id for r in records} == expected and len(set(descriptions)) == len(descriptions)
    return dg.AssetCheckResult(passed=passed, metadata={"tasks": len(records), "clusters": len(expected)})


@dg.asset_check(asset=landsat_regions, partitions_def=mining_country_year, blocking=True,
                description="The zarr region exists, has every chunk under every cluster tile, and declares 7 float32 bands.")
def region_covers_cluster_tiles(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    country, year = _country_year(context)
    path = region_path(storage.root_path, country, year)
    if not store_exists(path):
        return dg.AssetCheckResult(passed=False, metadata={"problem": f"no zarr region at {path}"})
    region = open_store(path)
    clusters = without_skipped(storage.root_path, country, year, _clusters(storage, country))
    tiles = [t for tiles in clusters["tiles"] for t in tiles]
    missing = [f"{ix},{iy}" for (ix, iy), ok in tile_chunks_present(path, tiles).items() if not ok]
    bands_ok = list(region["band"].values) == list(BANDS) and region[VARIABLE].dtype == np.float32
    return dg.AssetCheckResult(passed=not missing and bands_ok, metadata={
        "missing_tiles": dg.MetadataValue.text(" ".join(missing[:50])), "bands": ", ".join(map(str, region["band"].values)),
        "dtype": str(region[VARIABLE].dtype)})


class ValidShareConfig(dg.Config):
    floor: float = 0.2


@dg.asset_check(asset=landsat_regions, partitions_def=mining_country_year,
                description="Share of pixels with data in the clusters' tiles is above a floor (soft: the clip leaves NaN).")
def region_valid_share(context: dg.AssetCheckExecutionContext, config: ValidShareConfig, storage: StorageResource) -> dg.AssetCheckResult:
    country, year = _country_year(context)
    path = region_path(storage.root_path, country, year)
    if not store_exists(path):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN, metadata={"problem": f"no zarr region at {path}"})
    clusters = without_skipped(storage.root_path, country, year, _clusters(storage, country))
    tiles = {(int(ix), int(iy)) for ts in clusters["tiles"] for ix, iy in ts}
    share = float(np.mean([np.isfinite(tile_array(path, ix, iy)[0]).mean() for ix, iy in sorted(tiles)]))
    return dg.AssetCheckResult(passed=share >= config.floor, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"valid_share": share, "floor": config.floor})


@dg.asset_check(asset=landsat_regions, partitions_def=mining_country_year,
                description="No export file of a downloaded cluster is left on Drive.")
def no_drive_leftovers(context: dg.AssetCheckExecutionContext, storage: StorageResource, drive: DriveResource) -> dg.AssetCheckResult:
    country, year = _country_year(context)
    records = read_ledger(ledger_path(storage.root_path, country, year))
    left = [f.name for r in records if r.downloaded and r.route == "drive" for f in drive.list_files(r.spec.description)]
    return dg.AssetCheckResult(passed=not left, metadata={"leftovers": dg.MetadataValue.text(" ".join(left))})


@dg.asset_check(asset=mining_export_status, description="No country-year has exports that failed for good (soft).")
def no_failed_exports(storage: StorageResource) -> dg.AssetCheckResult:
    table = pd.read_csv(status_path(storage).open())
    failed = table.loc[(table["FAILED"] + table["CANCELLED"]) > 0, "partition"].tolist()
    return dg.AssetCheckResult(passed=not failed, severity=dg.AssetCheckSeverity.WARN, metadata={"failed": ", ".join(failed)})


checks = [polygons_rejected_rows, clusters_partition_the_mines, exports_one_task_per_cluster, region_covers_cluster_tiles,
          region_valid_share, no_drive_leftovers, no_failed_exports]
