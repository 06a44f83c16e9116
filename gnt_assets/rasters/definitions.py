"""The rasters pipeline's assets, checks, sensors and schedules, and its resources for a profile."""

import os
from typing import Any

import dagster as dg

from gnt_assets.rasters.assets import (
    grid_assets,
    raster_catalog,
    raster_source,
    raster_tiles,
    resampled_assets,
)
from gnt_assets.rasters.checks import checks
from gnt_assets.rasters.jobs import raster_archive_job, raster_cache_cleanup, raster_cache_cleanup_schedule
from gnt_assets.rasters.resources import RasterFolderResource
from gnt_assets.rasters.sensors import (
    raster_folder_sensor,
    raster_registration_job,
    raster_resample_job,
    raster_tile_job,
)
from gnt_assets.vocabulary import FOLLOWS_ANY_PARTITION_OR_FAILURE, describe

KINDS = {
    "raster_source": {"python", "geotiff"},
    "raster_catalog": {"python", "parquet"},
    "raster_tiles": {"python", "dask", "zarr"},
    **{asset.key.to_user_string(): {"python", "geopandas", "parquet"} for asset in grid_assets},
    **{asset.key.to_user_string(): {"python", "parquet"} for asset in resampled_assets},
}

defs = dg.Definitions(
    assets=describe(
        [raster_source, raster_catalog, raster_tiles, *grid_assets, *resampled_assets],
        owner="team:rasters",
        kinds=KINDS,
        # The catalog is rebuilt after rasters register or fail to (once their runs are over).
        automation={"raster_catalog": FOLLOWS_ANY_PARTITION_OR_FAILURE},
    ),
    asset_checks=checks,
    sensors=[raster_folder_sensor],
    jobs=[raster_registration_job, raster_tile_job, raster_resample_job, raster_cache_cleanup, raster_archive_job],
    schedules=[raster_cache_cleanup_schedule],
)


def resource_set(profile: str) -> dict[str, Any]:
    return {
        "raster_folder": RasterFolderResource(
            folder=os.environ.get("GNT_RASTER_FOLDER", "rasters/incoming"),
            registry=os.environ.get("GNT_RASTER_REGISTRY", "rasters/registry.yaml"),
            tile_size=int(os.environ.get("GNT_RASTER_TILE_SIZE", "1000")),
            memory_limit_mb=float(os.environ.get("GNT_RASTER_MEMORY_LIMIT_MB", "1536")),
        )
    }
