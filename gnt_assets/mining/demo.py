"""The mining pipeline's part of `make demo`: two countries x two years, polygons to zarr regions, locally."""

import dagster as dg

from gnt_assets.demo_runs import QUIET_RUN_CONFIG, run_job

COUNTRIES = ("BWA", "NAM")
YEARS = ("2019", "2020")
# Small clusters (a few world tiles each) keep the local composites small; the seed's buffer is 0.05 degrees.
RUN_CONFIG = {"ops": {"mining_clusters": {"config": {"buffer_degrees": 0.005}}}}


def _materialize(instance, defs, resources, selection, partition=None, ops=None, job="mining_demo") -> dg.ExecuteInProcessResult:
    config = {**QUIET_RUN_CONFIG, **RUN_CONFIG} if "mining_clusters" in selection else dict(QUIET_RUN_CONFIG)
    if ops:
        config = {**config, "ops": {**config.get("ops", {}), **ops}}
    return run_job(defs, instance, job, selection, partition, resources=resources, run_config=config)


def _tick_until(instance, resources, cursor, wanted: int) -> tuple[str, list, int]:
    """gee_export_sensor ticks (READY -> RUNNING -> COMPLETED, queued ones submitted) until ``wanted`` requests."""
    from gnt_assets.mining.sensors import gee_export_sensor

    requested, ticks = [], 0
    while len(requested) < wanted and ticks < 40:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
            result = gee_export_sensor(context)
        cursor, requested, ticks = result.cursor, requested + list(result.run_requests), ticks + 1
    return cursor, requested, ticks


def _run_request(instance, defs, resources, request) -> tuple[dict, dict]:
    """What the sensor's run does: the region, then (the chain) the training tiles and their HPC copy."""
    selection = [key.to_user_string() for key in request.asset_selection]
    result = _materialize(instance, defs, resources, selection, request.partition_key, job=request.job_name or "mining_region_job")
    return _metadata(result, "landsat_regions"), _metadata(result, "mining_training_tiles")


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the mining demo partitions on the local backends."""
    from upath import UPath

    from gnt_assets.mining.exports import base_of, ledger_path, read_ledger
    from gnt_assets.mining.local.earthengine import LocalEarthEngine

    # Regions under ~300 kB take the direct computePixels path, larger ones go through Drive in 128 px shards;
    # at most 6 Earth Engine tasks in flight, so the sensor also submits queued exports.
    settings = {"root": defs.resources["earthengine"].root, "direct_max_bytes": 300_000, "shard_width": 128, "max_in_flight": 6}
    local = LocalEarthEngine(**settings)
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
    failing = LocalEarthEngine(**settings, fail_descriptions=[base_of(redo.spec.description)], fail_attempts=redo.attempts + 2)
    cursor, requested, ticks = _tick_until(instance, {**resources, "earthengine": failing}, None, len(partitions))
    print(f"   gee_export_sensor: {ticks} ticks until every export completed or failed 3 times; download runs requested "
          f"for {len(requested)} partitions", flush=True)
    for request in requested:  # each run: region -> training tiles -> HPC copy, no manual step
        meta, tiles = _run_request(instance, defs, resources, request)
        skipped = f", skipped (failed 3 times): {meta['skipped_failed']}" if meta["skipped_failed"] else ""
        print(f"   zarr region {request.partition_key}: {meta['clusters_written']} clusters, {meta['drive_files_deleted']} Drive files "
              f"and {meta['direct_files_deleted']} direct GeoTIFFs verified and deleted{skipped}; then {tiles['tiles']} training tiles ({tiles['bytes']:,} bytes) and their HPC copy", flush=True)
    key = dg.MultiPartitionKey({"country": "BWA", "year": "2020"})
    meta = _metadata(_materialize(instance, defs, resources, ["landsat_exports"], key,
                                  ops={"landsat_exports": {"config": {"reset": [redo.spec.cluster_id[:8]]}}}), "landsat_exports")
    attempt = next(r.attempts for r in read_ledger(ledger_path(root, "BWA", "2020")) if r.spec.cluster_id == redo.spec.cluster_id)
    cursor, again, ticks = _tick_until(instance, resources, cursor, 1)
    for request in again:
        meta, tiles = _run_request(instance, defs, resources, request)
        print(f"   redo {redo.spec.cluster_id[:8]} in {request.partition_key}: reset to attempt {attempt}, {ticks} sensor ticks, "
              f"region rewritten with {meta['clusters_written']} clusters (skipped: {meta['skipped_failed'] or 'none'}), "
              f"{tiles['tiles']} training tiles copied", flush=True)
    _materialize(instance, defs, resources, ["mining_export_status"])
    # then the janitor
    janitor = defs.resolve_job_def("janitor").execute_in_process(instance=instance, run_config=QUIET_RUN_CONFIG, raise_on_error=False)
    print(f"   janitor check: {'storage agrees with Dagster' if janitor.success else 'found problems (see the janitor run)'}", flush=True)
