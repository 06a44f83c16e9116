"""The sentinel pipeline's part of `make demo`: the demo AOI's square and Major TOM cubes for two months,
the newer one materialized first."""

import dagster as dg

from gnt_assets.partitions import sentinel_chunk
from gnt_assets.sentinel.local import DEMO_MONTHS


def add_chunk_partitions(instance: dg.DagsterInstance, defs: dg.Definitions) -> list[str]:
    """Evaluate the chunk sensor once and apply its partition requests (what the daemon does)."""
    from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

    context = dg.build_sensor_context(instance=instance, definitions=defs, resources={"storage": defs.resources["storage"]})
    result = sentinel_chunk_sensor(context)
    for request in getattr(result, "dynamic_partitions_requests", None) or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return instance.get_dynamic_partitions(sentinel_chunk.name)


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the sentinel demo partitions on the local backends."""
    from gnt_assets.demo_runs import materialize_partitions

    materialize_partitions(defs, instance, ["sentinel_aoi", "sentinel_grid"], job="sentinel_demo")
    chunks = add_chunk_partitions(instance, defs)
    print(f"   {len(chunks)} chunks x {len(DEMO_MONTHS)} months", flush=True)
    # Newest month first (as the chunk sensor requests it): each month still lands at its own time index.
    keys = [dg.MultiPartitionKey({"month": month, "chunk": chunk}) for month in sorted(DEMO_MONTHS, reverse=True)
            for chunk in chunks]
    materialize_partitions(defs, instance, ["sentinel_mosaic"], keys, job="sentinel_mosaic_job")
    materialize_partitions(defs, instance, ["sentinel_run_log"], job="sentinel_demo")
