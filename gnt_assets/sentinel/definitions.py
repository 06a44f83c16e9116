"""The sentinel pipeline's assets, checks, sensors and schedules."""

import dagster as dg

from gnt_assets.sentinel.assets import sentinel_aoi, sentinel_grid, sentinel_mosaic, sentinel_run_log
from gnt_assets.sentinel.checks import aoi_is_valid_area, grid_layout_disjoint, mosaic_checks, no_failed_chunks
from gnt_assets.sentinel.schedules import sentinel_monthly_schedule
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

defs = dg.Definitions(
    assets=[sentinel_aoi, sentinel_grid, sentinel_mosaic, sentinel_run_log],
    asset_checks=[*mosaic_checks, no_failed_chunks, grid_layout_disjoint, aoi_is_valid_area],
    sensors=[sentinel_chunk_sensor],
    schedules=[sentinel_monthly_schedule],
)
