"""The conus404 pipeline's assets, checks, sensors and schedules."""

import dagster as dg

from gnt_assets.conus404.assets import conus404_analysis_ready, conus404_daily, conus404_daily_summary, conus404_failure_report
from gnt_assets.conus404.checks import analysis_ready_layout, daily_checks, no_ultimate_failures, summary_covers_variables
from gnt_assets.conus404.schedules import conus404_catchup_schedule
from gnt_assets.conus404.sensors import conus404_failure_report_sensor

defs = dg.Definitions(
    assets=[conus404_daily, conus404_daily_summary, conus404_failure_report, conus404_analysis_ready],
    asset_checks=[*daily_checks, summary_covers_variables, no_ultimate_failures, analysis_ready_layout],
    sensors=[conus404_failure_report_sensor],
    schedules=[conus404_catchup_schedule],
)
