"""The sentinel pipeline's assets, checks, sensors and schedules, and its resources for a profile."""

import os
from pathlib import Path
from typing import Any

import dagster as dg

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
from gnt_assets.sentinel.local import LocalSentinelStac
from gnt_assets.sentinel.resources import (
    EarthSearchStac,
    PlanetaryComputerStac,
    SentinelCubeResource,
)
from gnt_assets.sentinel.schedules import sentinel_monthly_schedule
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

defs = dg.Definitions(
    assets=[sentinel_aoi, sentinel_grid, sentinel_mosaic, sentinel_run_log],
    asset_checks=[*mosaic_checks, no_failed_chunks, grid_layout_disjoint, aoi_is_valid_area],
    sensors=[sentinel_chunk_sensor],
    schedules=[sentinel_monthly_schedule],
)


def resource_set(profile: str) -> dict[str, Any]:
    cube = {"sentinel_cube": SentinelCubeResource(backend=os.environ.get("GNT_SENTINEL_CUBE", "zarr"))}
    if profile == "local":
        root = os.environ.get("GNT_STORAGE_ROOT", "./data")
        local_root = root if "://" not in root else "./data"
        return {"sentinel_stac": LocalSentinelStac(data_root=str(Path(local_root) / "sentinel_source")), **cube}
    if os.environ.get("GNT_SENTINEL_STAC", "earth-search") == "planetary-computer":
        return {"sentinel_stac": PlanetaryComputerStac(), **cube}
    return {"sentinel_stac": EarthSearchStac(), **cube}
