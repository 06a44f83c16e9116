"""The mining pipeline's part of `make demo`: two countries x two years, polygons to zarr regions, locally."""

import dagster as dg

from gnt_assets.demo_runs import QUIET_RUN_CONFIG

COUNTRIES = ("BWA", "NAM")
YEARS = ("2019", "2020")
# Small clusters (a few world tiles each) keep the local composites small; the seed's buffer is 0.05 degrees.
RUN_CONFIG = {"ops": {"mining_clusters": {"config": {"buffer_degrees": 0.005}}}}


def _materialize(instance, defs, resources, selection, partition=None, ops=None) -> dg.ExecuteInProcessResult:
    config = {**QUIET_RUN_CONFIG, **RUN_CONFIG} if "mining_clusters" in selection else dict(QUIET_RUN_CONFIG)
    if ops:
        config = {**config, "ops": {**config.get("ops", {}), **ops}}
    return dg.materialize(
        [*defs.assets, *(defs.asset_checks or [])], selection=selection, partition_key=partition, instance=instance,
        resources=resources, raise_on_error=True, run_config=config,
    )


def _tick_until(instance, resources, cursor, wanted: int) -> tuple[str, list, int]:
    """gee_export_sensor ticks (READY -> RUNNING -> COMPLETED, queued ones submitted) until ``wanted`` requests."""
    from gnt_assets.mining.sensors import gee_export_sensor

    requested, ticks = [], 0
    while len(requested) < wanted and ticks < 40:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            result = gee_export_sensor(context)
        cursor, requested, ticks = result.cursor, requested + [r.partition_key for r in result.run_requests], ticks + 1
    return cursor, requested, ticks


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the mining demo partitions on the local backends."""
    from upath import UPath

    from gnt_assets.mining.exports import base_of, ledger_path, read_ledger
    from gnt_assets.mining.local.earthengine import LocalEarthEngine

    # Regions under ~300 kB take the direct computePixels path, larger ones go through Drive in 128 px shards;
    # at most 6 Earth Engine tasks in flight, so the sensor also submits queued exports.
    local = LocalEarthEngine(root=defs.resources["earthengine"].root, direct_max_bytes=300_000, shard_width=128, max_in_flight=6)
    resources = {**defs.resources, "earthengine": local}
    _materialize(instance, defs, resources, ["mine_polygons"])
    for country in COUNTRIES:
        _materialize(instance, defs, resources, ["mining_clusters"], country)
    partitions = [dg.MultiPartitionKey({"country": c, "year": y}) for c in COUNTRIES for y in YEARS]
    for key in partitions:
        meta = _metadata(_materialize(instance, defs, resources, ["landsat_exports"], key), "landsat_exports")
        print(f"   exports {key}: {meta['direct']} direct (computePixels), {meta['drive']} via Drive: "
              f"{meta['submitted']} submitted, {meta['queued']} queued", flush=True)
    # One BWA|2020 cluster fails three times on the local Earth Engine: the region is written without it (named),
    # then a reset (landsat_exports config) exports it again as attempt 4 and the sensor requests the region again.
    root = UPath(defs.resources["earthengine"].root)
    redo = next(r for r in read_ledger(ledger_path(root, "BWA", "2020")) if r.route == "drive")
    failing = local.model_copy(update={"fail_descriptions": [base_of(redo.spec.description)], "fail_attempts": 3})
    cursor, requested, ticks = _tick_until(instance, {**resources, "earthengine": failing}, None, len(partitions))
    print(f"   gee_export_sensor: {ticks} ticks until every export completed or failed 3 times; download runs requested "
          f"for {len(requested)} partitions", flush=True)
    for key in requested:
        meta = _metadata(_materialize(instance, defs, resources, ["landsat_regions"], key), "landsat_regions")
        skipped = f", skipped (failed 3 times): {meta['skipped_failed']}" if meta["skipped_failed"] else ""
        print(f"   zarr region {key}: {meta['clusters_written']} clusters, {meta['drive_files_deleted']} Drive files verified and deleted{skipped}", flush=True)
    key = dg.MultiPartitionKey({"country": "BWA", "year": "2020"})
    meta = _metadata(_materialize(instance, defs, resources, ["landsat_exports"], key,
                                  ops={"landsat_exports": {"config": {"reset": [redo.spec.cluster_id[:8]]}}}), "landsat_exports")
    cursor, again, ticks = _tick_until(instance, resources, cursor, 1)
    for key in again:
        meta = _metadata(_materialize(instance, defs, resources, ["landsat_regions"], key), "landsat_regions")
        print(f"   redo {redo.spec.cluster_id[:8]} in {key}: reset to attempt 4, {ticks} sensor ticks, region rewritten with "
              f"{meta['clusters_written']} clusters (skipped: {meta['skipped_failed'] or 'none'})", flush=True)
    _materialize(instance, defs, resources, ["mining_export_status"])
    # Mining II: training tiles (packed, memory-mapped) and their verified copy on the HPC target, then the janitor.
    for key in requested:
        tiles = _materialize(instance, defs, resources, ["mining_training_tiles", "mining_hpc_transfer"], key)
        meta = tiles.asset_materializations_for_node("mining_training_tiles")[0].metadata
        print(f"   training tiles {key}: {meta['tiles'].value} tiles, {meta['bytes'].value:,} bytes", flush=True)
    janitor = defs.resolve_job_def("janitor").execute_in_process(instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False)
    print(f"   janitor check: {'storage agrees with Dagster' if janitor.success else 'found problems (see the janitor run)'}", flush=True)
