"""Mining I assets: mine polygons -> country clusters -> Earth Engine exports -> zarr regions, plus a status report.

Clusters are partitioned by country only: they depend on the polygons, not on the
year, so one clusters table per country serves every year's exports.
"""

import dagster as dg
import geopandas as gpd
import numpy as np
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.quicklook import quicklook
from gnt_assets.materialization import catalog_metadata, output_metadata, quicklook_metadata, year_span
from gnt_assets.mining.clusters import BUFFER_DEGREES, cluster_country
from gnt_assets.mining.exports import ledger_path
from gnt_assets.mining.local.samples import ensure_sample_polygons
from gnt_assets.mining.pipeline import load_polygons, submit_exports, write_regions
from gnt_assets.mining.regions import BANDS, tile_array
from gnt_assets.mining.resources import DriveResource, EarthEngineResource
from gnt_assets.mining.status import status_table
from gnt_assets.partitions import mining_country, mining_country_year
from gnt_assets.resources.storage import StorageResource

by_country = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="country")


class PolygonsConfig(dg.Config):
    path: str = ""  # GeoPackage/GeoParquet of mine polygons; empty: the local sample under the storage root


class ClustersConfig(dg.Config):
    buffer_degrees: float = BUFFER_DEGREES


class ExportsConfig(dg.Config):
    reset: list[str] = []  # cluster ids (or their first 8 characters) to return to "to export" (their next attempt)


class RegionsConfig(dg.Config):
    skip_failed: bool = True  # write the region without clusters whose exports failed for good (named), not block it


def _country_year(context) -> tuple[str, int]:
    keys = context.partition_key.keys_by_dimension
    return keys["country"], int(keys["year"])


@dg.asset(group_name="mining", io_manager_key="geoparquet_io_manager")
def mine_polygons(context: dg.AssetExecutionContext, config: PolygonsConfig, storage: StorageResource) -> dg.Output[gpd.GeoDataFrame]:
    """Validated mine polygons (EPSG:4326, with a mine_id column); rejected rows and the reasons go to a rejects
    GeoParquet. Adds every country found as a mining_country partition."""
    source = UPath(config.path) if config.path else ensure_sample_polygons(storage.root_path)
    rejects_path = storage.path("mining", "rejects", "mine_polygons.parquet")
    checked = load_polygons(source, rejects_path)
    if checked.valid.empty:
        raise dg.Failure(f"{source}: no valid polygon left ({len(checked.rejects)} rejected)")
    countries = sorted(checked.valid["ISO3_CODE"].unique())
    context.instance.add_dynamic_partitions(mining_country.name, countries)
    rejects = "\n".join(f"- {source} row {r.mine_id} ({r.ISO3_CODE}): {r.reason}" for r in checked.rejects.itertuples())
    if len(checked.rejects):
        context.log.warning(f"{source}: {len(checked.rejects)} rows rejected:\n{rejects}")
    return dg.Output(checked.valid, metadata={
        "valid": len(checked.valid), "rejected": len(checked.rejects), "made_valid": checked.made_valid,
        "unwrapped_across_antimeridian": checked.unwrapped,
        "countries": ", ".join(countries), "rejects": dg.MetadataValue.md(rejects), **output_metadata([rejects_path]),
    })


@dg.asset(group_name="mining", io_manager_key="geoparquet_io_manager", partitions_def=mining_country)
def mining_clusters(context: dg.AssetExecutionContext, config: ClustersConfig, mine_polygons: gpd.GeoDataFrame) -> dg.Output[gpd.GeoDataFrame]:
    """The country's mines grouped where their envelopes overlap (STRtree), each cluster with a stable sha256 id,
    its world-grid tiles and tile-aligned export region. Partitioned by country only: clusters depend on the polygons,
    not the year, so every year's exports read the same table instead of recomputing it."""
    country = context.partition_key
    if not (mine_polygons["ISO3_CODE"] == country).any():
        raise dg.Failure(f"country {country}: no valid mine polygons with this ISO3 code; known: {sorted(mine_polygons['ISO3_CODE'].unique())}")
    clusters = cluster_country(mine_polygons, country, config.buffer_degrees)
    # plain lists on disk: pandas' Arrow list dtype does not survive a Parquet round trip through the pandas metadata
    clusters = clusters.astype({"tiles": object, "mine_ids": object})
    return dg.Output(clusters, metadata={
        "clusters": len(clusters), "mines": int(clusters["n_mines"].sum()), "tiles": int(clusters["tiles"].map(len).sum()),
        "crossing_antimeridian": int(clusters["crosses_antimeridian"].sum()), "buffer_degrees": config.buffer_degrees,
    })


@dg.asset(
    group_name="mining", partitions_def=mining_country_year, pool="gee",
    ins={"mining_clusters": dg.AssetIn(partition_mapping=by_country)},
    backfill_policy=dg.BackfillPolicy.multi_run(1),  # one country-year per run: the code reads one partition key
)
def landsat_exports(context: dg.AssetExecutionContext, config: ExportsConfig, storage: StorageResource,
                    earthengine: EarthEngineResource, drive: DriveResource, mining_clusters: gpd.GeoDataFrame) -> dg.MaterializeResult:
    """One Landsat annual-composite export per cluster on the world grid (two across the antimeridian); tasks are
    found in one listing before submitting (descriptions carry the attempt number), small regions take the direct
    computePixels path on a thread pool. The config option reset returns clusters to "to export"."""
    country, year = _country_year(context)
    records, counts, errors = submit_exports(storage.root_path, earthengine, mining_clusters, country, year, drive=drive,
                                             reset=config.reset)
    if errors:
        context.log.error("; ".join(errors))
    states = [r.state for r in records]
    metadata = {**counts, "tasks": len(records), "states": dg.MetadataValue.json({s: states.count(s) for s in set(states)}),
                "cluster_errors": dg.MetadataValue.text("; ".join(errors)), **output_metadata([ledger_path(storage.root_path, country, year)])}
    if errors and not records:
        raise dg.Failure(f"{country}|{year}: no cluster could be exported: {'; '.join(errors)}", metadata=metadata)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    group_name="mining", partitions_def=mining_country_year, deps=[landsat_exports],
    ins={"mining_clusters": dg.AssetIn(partition_mapping=by_country)},
    backfill_policy=dg.BackfillPolicy.multi_run(1),  # one country-year per run: the code reads one partition key
)
def landsat_regions(context: dg.AssetExecutionContext, config: RegionsConfig, storage: StorageResource, drive: DriveResource,
                    mining_clusters: gpd.GeoDataFrame) -> dg.MaterializeResult:
    """The country-year zarr region: every export file downloaded (all shards), checked against the world grid,
    written cluster by cluster, and only then deleted from Drive (direct exports' GeoTIFFs once the region marks
    them written). Exports that failed for good are skipped and
    named (config option skip_failed); reset them with the landsat_exports config option reset to redo them."""
    country, year = _country_year(context)
    result = write_regions(storage.root_path, drive, mining_clusters, country, year, skip_failed=config.skip_failed)
    if result["errors"]:
        raise dg.Failure(f"{country}|{year}: " + "; ".join(result["errors"]), metadata={"written": len(result["written"])})
    if result["skipped_failed"]:
        context.log.warning(f"{country}|{year}: written without exports that failed for good: {', '.join(result['skipped_failed'])}")
    metadata = {"clusters_written": len(result["written"]), "drive_files_deleted": result["drive_deleted"],
                "direct_files_deleted": result["direct_deleted"],
                "skipped_failed": dg.MetadataValue.text(", ".join(result["skipped_failed"])), **output_metadata([result["path"]]),
                **catalog_metadata(context, storage.root_path, {"zarr": result["path"], **_mines_asset(storage)}, times=year_span(int(year)),
                                   hints={"zarr": {"band_names": BANDS}, "mines": {"role": "metadata"}})}
    first = mining_clusters[mining_clusters["cluster_id"].isin(result["written"])].head(1)
    if len(first):
        ix, iy = first["tiles"].iloc[0][0]
        rgb = tile_array(result["path"], int(ix), int(iy))[[2, 1, 0]]
        metadata |= quicklook_metadata(quicklook(rgb, nodata=np.nan, crs="EPSG:4326", variable="Landsat red, green, blue"), title="cluster_rgb")
    return dg.MaterializeResult(metadata=metadata)


def _mines_asset(storage: StorageResource) -> dict[str, UPath]:
    """The mine polygons (where geoparquet_io_manager keeps the mine_polygons asset), so the region's STAC item
    names them (role metadata: they do not widen its footprint) and the viewer draws them over the region."""
    path = storage.path("tables", "mine_polygons.parquet")
    return {"mines": path} if path.exists() else {}


def status_path(storage: StorageResource) -> UPath:
    return storage.path("mining", "status.csv")


@dg.asset(group_name="mining", deps=[landsat_exports, landsat_regions])
def mining_export_status(storage: StorageResource) -> dg.MaterializeResult:
    """Clusters per export state (READY, RUNNING, FAILED, CANCELLED, COMPLETED, downloaded) for every country-year
    with exports, as a table in the UI and as mining/status.csv."""
    table = status_table(storage.root_path)
    atomic_write_text(status_path(storage), table.to_csv(index=False))
    text = {"partition", "errors"}
    return dg.MaterializeResult(metadata={
        "status": dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in table.to_dict("records")],
            schema=dg.TableSchema(columns=[dg.TableColumn(c, "string" if c in text else "int") for c in table.columns]),
        ),
        "partitions": len(table), "failed_partitions": int(((table["FAILED"] + table["CANCELLED"]) > 0).sum()),
        **output_metadata([status_path(storage)]),
    })
