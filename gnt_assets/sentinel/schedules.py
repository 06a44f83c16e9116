"""Monthly: once a month is over, request its mosaic for every grid cell."""

import dagster as dg

from gnt_assets.partitions import sentinel_chunk
from gnt_assets.sentinel.sensors import last_complete_month, sentinel_mosaic_job


@dg.schedule(
    cron_schedule="0 6 5 * *",
    job=sentinel_mosaic_job,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Off by default. On the 5th of each month at 06:00 UTC (late scenes are in by then): starts the "
                "previous month's mosaic for every chunk.",
)
def sentinel_monthly_schedule(context: dg.ScheduleEvaluationContext):
    """On the 5th (late scenes are in), the previous month's partitions for all known chunks."""
    month = last_complete_month(context.scheduled_execution_time.date())
    chunks = context.instance.get_dynamic_partitions(sentinel_chunk.name)
    if not chunks:
        return dg.SkipReason("no sentinel_chunk partitions yet; materialize sentinel_grid and run sentinel_chunk_sensor")
    return [dg.RunRequest(partition_key=dg.MultiPartitionKey({"month": month, "chunk": c}), run_key=f"{month}|{c}")
            for c in chunks]
