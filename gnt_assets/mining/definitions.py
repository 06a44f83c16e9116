"""The mining pipeline's assets, checks, sensors and schedules."""

import dagster as dg

from gnt_assets.mining import assets, checks, janitor_checks, schedules, sensors, training_assets

defs = dg.Definitions(
    assets=[
        assets.mine_polygons,
        assets.mining_clusters,
        assets.landsat_exports,
        assets.landsat_regions,
        assets.mining_export_status,
        training_assets.mining_training_tiles,
        training_assets.mining_hpc_transfer,
    ],
    asset_checks=[
        *checks.checks,
        janitor_checks.training_tiles_match_clusters,
        janitor_checks.training_tiles_have_data_and_labels,
        janitor_checks.hpc_copy_matches_source,
    ],
    sensors=[
        sensors.gee_export_sensor,
        janitor_checks.janitor_repair_sensor,
    ],
    schedules=[schedules.janitor_daily],
    jobs=[janitor_checks.janitor],
)
