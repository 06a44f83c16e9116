"""The mining pipeline's part of `make demo`: two countries x two years, polygons to zarr regions, locally."""

import dagster as dg

COUNTRIES = ("BWA", "NAM")
YEARS = ("2019", "2020")
# Small clusters (a few world tiles each) keep the local composites small; the seed's buffer is 0.05 degrees.
RUN_CONFIG = {"ops": {"mining_clusters": {"config": {"buffer_degrees": 0.005}}}}


def _materialize(instance, defs, resources, selection, partition=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])], selection=selection, partition_key=partition, instance=instance,
        resources=resources, run_config=RUN_CONFIG if "mining_clusters" in selection else None, raise_on_error=True,
    )


def run(instance: dg.DagsterInstance) -> None:
    """Materializes the mining demo partitions on the local backends."""
    from gnt_assets.definitions import defs
    from gnt_assets.mining.sensors import gee_export_sensor

    # Regions under ~300 kB take the direct computePixels path, larger ones go through Drive in 128 px shards.
    resources = {**defs.resources, "earthengine": defs.resources["earthengine"].model_copy(update={"direct_max_bytes": 300_000, "shard_width": 128})}
    _materialize(instance, defs, resources, ["mine_polygons"])
    for country in COUNTRIES:
        _materialize(instance, defs, resources, ["mining_clusters"], country)
    partitions = [dg.MultiPartitionKey({"country": c, "year": y}) for c in COUNTRIES for y in YEARS]
    for key in partitions:
        _materialize(instance, defs, resources, ["landsat_exports"], key)
    cursor, requested = None, []
    for _ in range(6):  # the sensor's ticks: tasks READY -> RUNNING -> COMPLETED, then download runs requested
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            result = gee_export_sensor(context)
        cursor, requested = result.cursor, requested + [r.partition_key for r in result.run_requests]
        if len(requested) == len(partitions):
            break
    for key in requested:
        _materialize(instance, defs, resources, ["landsat_regions"], key)
    _materialize(instance, defs, resources, ["mining_export_status"])
    # Mining II: training tiles (packed, memory-mapped) and their verified copy on the HPC target, then the janitor.
    for key in requested:
        tiles = _materialize(instance, defs, resources, ["mining_training_tiles", "mining_hpc_transfer"], key)
        meta = tiles.asset_materializations_for_node("mining_training_tiles")[0].metadata
        print(f"   training tiles {key}: {meta['tiles'].value} tiles, {meta['bytes'].value:,} bytes", flush=True)
    from gnt_assets.demo import DEMO_LOG_LEVEL

    quiet = {"loggers": {"console": {"config": {"log_level": DEMO_LOG_LEVEL}}}}
    janitor = defs.get_job_def("janitor").execute_in_process(instance=instance, run_config=quiet, raise_on_error=False)
    print(f"   janitor check: {'storage agrees with Dagster' if janitor.success else 'found problems (see the janitor run)'}", flush=True)
