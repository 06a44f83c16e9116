"""The rasters pipeline's assets, checks, sensors and schedules."""

import dagster as dg
from gnt_assets.rasters.assets import grid_assets, raster_catalog, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.checks import checks
from gnt_assets.rasters.jobs import raster_cache_cleanup, raster_cache_cleanup_schedule
from gnt_assets.rasters.sensors import raster_folder_sensor, raster_registration_job, raster_resample_job, raster_tile_job

defs = dg.Definitions(
    assets=[raster_source, raster_catalog, raster_tiles, *grid_assets, *resampled_assets],
    asset_checks=checks,
    sensors=[raster_folder_sensor],
    jobs=[raster_registration_job, raster_tile_job, raster_resample_job, raster_cache_cleanup],
    schedules=[raster_cache_cleanup_schedule],
)
