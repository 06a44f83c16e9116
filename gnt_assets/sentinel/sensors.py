"""Grid cells become ``sentinel_chunk`` partitions (only sensors may add dynamic partitions)."""

from datetime import date

import dagster as dg

from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import sentinel_chunk
from gnt_assets.resources.storage import StorageResource
from gnt_assets.sentinel import chunk_runs


def last_complete_month(today: date) -> str:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    return f"{year:04d}-{month:02d}-01"


sentinel_mosaic_job = dg.define_asset_job(
    "sentinel_mosaic_job",
    selection=dg.AssetSelection.assets("sentinel_mosaic"),
    description="Builds the cloud-masked monthly median mosaic of grid cells for a month, written into the grid's cube.",
)


@dg.sensor(
    job=sentinel_mosaic_job,
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Off by default. Every 5 minutes: adds a chunk partition for each new cell of the materialized "
                "sentinel_grid and starts its mosaic for the last complete month.",
)
def sentinel_chunk_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult | dg.SkipReason:
    """Adds a partition per new cell of the materialized sentinel_grid and requests its last complete month."""
    path = chunk_runs.grid_table_path(storage)
    if not path.exists():
        return dg.SkipReason("sentinel_grid is not materialized yet")
    known = set(context.instance.get_dynamic_partitions(sentinel_chunk.name))
    new = [c for c in read_table(path)["chunk"] if c not in known]
    if not new:
        return dg.SkipReason(f"no new grid cells: all {len(known)} cells of sentinel_grid are chunk partitions")
    month = last_complete_month(date.today())
    return dg.SensorResult(
        dynamic_partitions_requests=[sentinel_chunk.build_add_request(new)],
        run_requests=[dg.RunRequest(partition_key=dg.MultiPartitionKey({"month": month, "chunk": c}), run_key=f"{month}|{c}")
                      for c in new],
    )
