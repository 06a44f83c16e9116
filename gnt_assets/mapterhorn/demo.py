"""The mapterhorn pipeline's part of `make demo`: two generated sources (plain GeoTIFFs; zipped
ASCII/XYZ grids needing the configured CRS) from file lists to ``{source}.tar`` + ``.tar.md5``.
The file-list sensor requests one ranged run for the five files, which goes through them on the
pool in one process. One alpine file is deliberately broken (an HTML error page served as ``.tif``):
it fails for good at its download while the run goes on, the merge leaves it out and the source's
report names it."""

import json
import os
import subprocess

import dagster as dg

from gnt_assets.demo_runs import materialize_partitions, run_job
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.merge import merged_dir
from gnt_assets.mapterhorn.sensors import FILE_ASSETS, SOURCE_ASSETS, mapterhorn_file_list_sensor, mapterhorn_source_merge_sensor


def tick(instance: dg.DagsterInstance, defs: dg.Definitions, sensor: dg.SensorDefinition) -> list[dg.RunRequest]:
    """Evaluates a sensor once as the daemon would: adds its partitions, returns its run requests."""
    resources = {"mapterhorn_sources": defs.resources["mapterhorn_sources"]}
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return list(result.run_requests or [])


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the mapterhorn demo partitions on the local backends."""
    root = defs.resources["mapterhorn_sources"].root
    # The broken file's failure is expected: its step error is printed below in one line, not as Dagster's traceback.
    quiet = {"loggers": {"console": {"config": {"log_level": os.environ.get("GNT_DEMO_LOG_LEVEL", "CRITICAL")}}}}
    for request in tick(instance, defs, mapterhorn_file_list_sensor):  # ranged runs: many files each
        result = run_job(defs, instance, "mapterhorn_file_job", FILE_ASSETS, run_config=quiet, tags=request.tags)
        keys = {m.partition for m in result.asset_materializations_for_node("mapterhorn_cog")}
        failed = {o.partition for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION" for o in [e.event_specific_data.asset_observation]}
        print(f"   one run, {request.tags['mapterhorn/files']} files: {len(keys)} done, {len(failed)} failed")
        for key in sorted(failed):
            failure = FileWork(root, key).failure() or {"step": "?", "error": "no failure recorded"}
            print(f"   {key}: failed at {failure['step']} (expected for the demo's broken file): {failure['error'][:160]}")
    sources = [request.partition_key for request in tick(instance, defs, mapterhorn_source_merge_sensor)]
    materialize_partitions(defs, instance, SOURCE_ASSETS, sources, job="mapterhorn_source_job")
    tar_store = defs.resources["storage"].path("tar-store")
    for source in sources:
        check = subprocess.run(["md5sum", "-c", f"{source}.tar.md5"], cwd=str(tar_store), capture_output=True, text=True, check=True)
        print(f"   {check.stdout.strip()}  ({(tar_store / f'{source}.tar').stat().st_size:,} bytes)")
        report = json.loads((merged_dir(root, source) / "report.json").read_text())
        for failed in report["failed_files"]:
            print(f"   {source}: left out of the merge and named in report.json: {failed['key']} ({failed['url']})")
