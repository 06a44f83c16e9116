"""Monthly: once a month is over, request its mosaic for every grid cell."""

import dagster as dg

from gnt_assets.partitions import sentinel_chunk
from gnt_assets.sentinel.sensors import last_complete_month


@dg.schedule(cron_schedule="0 6 5 * *", target=dg.AssetSelection.assets("sentinel_mosaic"),
             default_status=dg.DefaultScheduleStatus.STOPPED)
def sentinel_monthly_schedule(context: dg.ScheduleEvaluationContext):
    """On the 5th (late scenes are in), the previous month's partitions for all known chunks."""
    month = last_complete_month(context.scheduled_execution_time.date())
    chunks = context.instance.get_dynamic_partitions(sentinel_chunk.name)
    if not chunks:
        return dg.SkipReason("no sentinel_chunk partitions yet; materialize sentinel_grid and run sentinel_chunk_sensor")
    return [dg.RunRequest(partition_key=dg.MultiPartitionKey({"month": month, "chunk": c}), run_key=f"{month}|{c}")
            for c in chunks]
