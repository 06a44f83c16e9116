"""The code location's automation sensor: evaluates the assets' automation conditions (see gnt_assets.vocabulary)."""

import dagster as dg

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description=(
        "Refreshes the summary assets after what they summarize changes: the mining export status, the CONUS404 "
        "daily summaries, the raster catalog and the Sentinel-2 run log. Requests nothing while upstream runs are in progress."
    ),
)
