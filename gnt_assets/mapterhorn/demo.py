"""The mapterhorn pipeline's part of `make demo`: two generated sources (plain GeoTIFFs; zipped
ASCII/XYZ grids needing the configured CRS) from file lists to ``{source}.tar`` + ``.tar.md5``."""

import subprocess

import dagster as dg

from gnt_assets.demo_runs import materialize_partitions
from gnt_assets.mapterhorn.sensors import FILE_ASSETS, SOURCE_ASSETS, mapterhorn_file_list_sensor, mapterhorn_source_merge_sensor


def tick(instance: dg.DagsterInstance, defs: dg.Definitions, sensor: dg.SensorDefinition) -> list[str]:
    """Evaluates a sensor once as the daemon would: adds its partitions, returns the requested keys."""
    resources = {"mapterhorn_sources": defs.resources["mapterhorn_sources"]}
    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return [request.partition_key for request in result.run_requests or []]


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the mapterhorn demo partitions on the local backends."""
    files = tick(instance, defs, mapterhorn_file_list_sensor)
    materialize_partitions(defs, instance, FILE_ASSETS, files)
    sources = tick(instance, defs, mapterhorn_source_merge_sensor)
    materialize_partitions(defs, instance, SOURCE_ASSETS, sources)
    tar_store = defs.resources["storage"].path("tar-store")
    for source in sources:
        check = subprocess.run(["md5sum", "-c", f"{source}.tar.md5"], cwd=str(tar_store), capture_output=True, text=True, check=True)
        print(f"   {check.stdout.strip()}  ({(tar_store / f'{source}.tar').stat().st_size:,} bytes)")
