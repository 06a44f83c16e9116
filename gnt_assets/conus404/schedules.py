"""Catch-up: every day, request the source-window days that conus404_daily does not have yet."""


from datetime import timedelta

import dagster as dg

from gnt_assets.conus404.assets import conus404_daily
from gnt_assets.conus404.resources import Conus404Source
from gnt_assets.partitions import conus404_day

MAX_DAYS_PER_TICK = 62


conus404_catchup_job = dg.define_asset_job(
    "conus404_catchup_job",
    selection=dg.AssetSelection.assets(conus404_daily.key),
    description="Aggregates one day of CONUS404 hourly data into the daily store, with its checks.",
)


@dg.schedule(
    cron_schedule="15 6 * * *",
    job=conus404_catchup_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 06:15 UTC: starts a run for each complete day of the CONUS404 source that conus404_daily "
                "does not have yet, oldest first, at most 62 per day.",
)
def conus404_catchup_schedule(context: dg.ScheduleEvaluationContext, conus404_source: Conus404Source):
    """When the source window grows, its new complete days become runs (oldest first, bounded per tick)."""
    first, last = conus404_source.complete_days(conus404_source.open_hourly())
    done = context.instance.get_materialized_partitions(conus404_daily.key)
    valid = set(conus404_day.get_partition_keys())
    wanted = [str(first + timedelta(days=i)) for i in range((last - first).days + 1)]
    missing = [day for day in wanted if day in valid and day not in done][:MAX_DAYS_PER_TICK]
    if not missing:
        return dg.SkipReason(f"conus404_daily has every day of the source window {first}..{last}")
    return [dg.RunRequest(run_key=f"conus404-catchup-{day}", partition_key=day) for day in missing]
