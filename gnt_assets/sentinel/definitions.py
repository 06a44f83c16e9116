"""The sentinel pipeline's assets, checks, sensors and schedules, and its resources for a profile."""

import os
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg

from gnt_assets.core.errors import InputError
from gnt_assets.sentinel.assets import (
    sentinel_aoi,
    sentinel_grid,
    sentinel_mosaic,
    sentinel_run_log,
)
from gnt_assets.sentinel.checks import (
    aoi_is_valid_area,
    grid_layout_disjoint,
    mosaic_checks,
    no_failed_chunks,
)
from gnt_assets.sentinel.local import LocalPlanetaryComputerStac, LocalSentinelStac
from gnt_assets.sentinel.resources import (
    EarthSearchStac,
    PlanetaryComputerStac,
    SentinelCubeResource,
)
from gnt_assets.sentinel.schedules import sentinel_monthly_schedule
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor, sentinel_mosaic_job
from gnt_assets.vocabulary import FOLLOWS_ANY_PARTITION, describe

KINDS = {
    "sentinel_aoi": {"python", "geopandas", "parquet"},
    "sentinel_grid": {"python", "geopandas", "parquet"},
    "sentinel_mosaic": {"python", "stac", "dask", "zarr"},
    "sentinel_run_log": {"python", "parquet"},
}

defs = dg.Definitions(
    assets=describe(
        [sentinel_aoi, sentinel_grid, sentinel_mosaic, sentinel_run_log],
        owner="team:sentinel",
        kinds=KINDS,
        # The run log is rebuilt after mosaic runs (once none is still running).
        automation={"sentinel_run_log": FOLLOWS_ANY_PARTITION},
        # The monthly schedule requests the past month on the 5th: by the 10th the mosaics are expected updated.
        freshness={"sentinel_mosaic": dg.FreshnessPolicy.cron(deadline_cron="0 6 10 * *", lower_bound_delta=timedelta(days=5))},
    ),
    asset_checks=[*mosaic_checks, no_failed_chunks, grid_layout_disjoint, aoi_is_valid_area],
    sensors=[sentinel_chunk_sensor],
    schedules=[sentinel_monthly_schedule],
    jobs=[sentinel_mosaic_job],
)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


class SentinelConfigError(InputError):
    """A combination of settings under which the mosaic's workers could not write the cube."""


def refuse_remote_workers_on_local_storage(profile: str, env: Mapping[str, str] = os.environ) -> None:
    """Mosaic chunks are written by the Dask workers: remote workers (Coiled, or a scheduler that is not on
    this machine) would write a local storage root onto their own disks. Refused at load, naming both settings."""
    root = env.get("GNT_STORAGE_ROOT", "./data")
    if "://" in root and not root.startswith(("file://", "local://")):
        return
    scheduler = env.get("GNT_DASK_SCHEDULER") or ""
    if scheduler:
        host = urlsplit(scheduler if "://" in scheduler else f"tcp://{scheduler}").hostname or ""
        if host in LOOPBACK_HOSTS or host.startswith("127."):
            return
        remote = f"GNT_DASK_SCHEDULER={scheduler!r} (a scheduler on {host})"
    elif profile == "cloud":
        remote = f"Coiled (GNT_PROFILE=cloud without GNT_DASK_SCHEDULER; GNT_COILED_CLUSTER={env.get('GNT_COILED_CLUSTER', 'gnt-assets')!r})"
    else:
        return
    raise SentinelConfigError(
        f"GNT_STORAGE_ROOT={root!r} is a local folder but compute is {remote}: its workers would write the Sentinel-2 "
        "cube to their own disks. Set GNT_STORAGE_ROOT to an object store (s3://bucket/prefix) or use a local scheduler")


def resource_set(profile: str) -> dict[str, Any]:
    refuse_remote_workers_on_local_storage(profile)
    cube = {"sentinel_cube": SentinelCubeResource(backend=os.environ.get("GNT_SENTINEL_CUBE", "zarr"))}
    if profile == "local":
        root = os.environ.get("GNT_STORAGE_ROOT", "./data")
        local_root = root if "://" not in root else "./data"
        local = LocalPlanetaryComputerStac if os.environ.get("GNT_SENTINEL_STAC") == "planetary-computer" else LocalSentinelStac
        return {"sentinel_stac": local(data_root=str(Path(local_root) / "sentinel_source")), **cube}
    if os.environ.get("GNT_SENTINEL_STAC", "earth-search") == "planetary-computer":
        return {"sentinel_stac": PlanetaryComputerStac(), **cube}
    return {"sentinel_stac": EarthSearchStac(), **cube}
