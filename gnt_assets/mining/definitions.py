"""The mining pipeline's assets, checks, sensors and schedules."""

import dagster as dg

from gnt_assets.mining import assets, checks, sensors

defs = dg.Definitions(
    assets=[
        assets.mine_polygons,
        assets.mining_clusters,
        assets.landsat_exports,
        assets.landsat_regions,
        assets.mining_export_status,
    ],
    asset_checks=[
        *checks.checks,
    ],
    sensors=[
        sensors.gee_export_sensor,
    ],
    schedules=[],
    jobs=[],
)
