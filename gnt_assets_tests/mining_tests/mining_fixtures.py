"""Mining I test helpers: local resources on a tmp storage root and small-cluster run config."""

from __future__ import annotations

import dagster as dg
from upath import UPath

from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
from gnt_assets.mining import assets as mining_assets
from gnt_assets.mining.checks import checks
from gnt_assets.mining.local.drive import LocalDrive
from gnt_assets.mining.local.earthengine import LocalEarthEngine
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.storage import StorageResource

SMALL_CLUSTERS = {"ops": {"mining_clusters": {"config": {"buffer_degrees": 0.005}}}}
ASSETS = [mining_assets.mine_polygons, mining_assets.mining_clusters, mining_assets.landsat_exports, mining_assets.landsat_regions, mining_assets.mining_export_status, *checks]


def mining_resources(root: UPath, **earthengine) -> dict:
    storage = StorageResource(root=str(root))
    settings = {"direct_max_bytes": 300_000, "shard_width": 128, **earthengine}
    return {
        "storage": storage,
        "geoparquet_io_manager": GeoParquetIOManager(storage=storage),
        "earthengine": LocalEarthEngine(root=str(root), **settings),
        "drive": LocalDrive(root=str(root)),
        "alerts": AlertSinksResource(),
    }


def materialize(instance, resources, selection, partition=None, raise_on_error=True) -> dg.ExecuteInProcessResult:
    key = None
    if partition and "|" in partition:
        country, year = partition.split("|")
        key = dg.MultiPartitionKey({"country": country, "year": year})
    elif partition:
        key = partition
    return dg.materialize(
        ASSETS, selection=selection, partition_key=key, instance=instance, resources=resources,
        run_config=SMALL_CLUSTERS if "mining_clusters" in selection else None, raise_on_error=raise_on_error,
    )


def sensor_tick(instance, resources, cursor=None):
    from gnt_assets.mining.sensors import gee_export_sensor

    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
        return gee_export_sensor(context)
