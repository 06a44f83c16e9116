"""Mapterhorn at catalog scale: the file-list sensor on a 100,000-line source, adding its partitions,
and the event-log bytes a file costs. Figures are printed with the issue's goal beside each.

1. Sensor: one source whose file_list.txt has ``--files`` lines. The first tick (empty instance)
   parses the list, plans and returns one batch (``sensors.MAX_RUNS_PER_TICK`` partitions and run
   requests); a tick with every partition already known; a tick over an unchanged list (cursor says
   so: not parsed). Cursor size after each. The Dagster side of a tick (run requests against newly
   added partitions) is bounded by the batch, so its cost no longer grows with the list.
2. Partitions: adding every key of the list to a SQLite instance, in sensor-sized batches.
3. Event log: three generated files (the local loopback sources) through the six per-file assets in
   process; the serialized size of every event of those runs, per file.

Not measured here (the run model of issue 20 part 1 is not built): backfill launch of a whole
source, files per second end to end, per-file overhead against plain calls, and the PostgreSQL config.

Usage: python benchmarks/mapterhorn_scale.py [--files 100000]
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import dagster as dg
from dagster._serdes import serialize_value

from gnt_assets.mapterhorn import sensors
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mapterhorn.sensors import FILE_ASSETS, mapterhorn_file_list_sensor


def _tick(instance: dg.DagsterInstance, resource: MapterhornSourcesResource, cursor: str | None) -> tuple[float, dg.SensorResult]:
    start = time.perf_counter()
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mapterhorn_sources": resource}) as context:
        result = mapterhorn_file_list_sensor(context)
    return time.perf_counter() - start, result


def sensor_and_partitions(files: int, folder: Path) -> None:
    catalog = folder / "source-catalog"
    (catalog / "scale").mkdir(parents=True)
    lines = "".join(f"https://dgm.example/scale/{i // 1000:03d}/dgm1_{i:06d}.tif\n" for i in range(files))
    (catalog / "scale" / "file_list.txt").write_text(lines)
    resource = MapterhornSourcesResource(work_dir=str(folder / "work"), catalog_dir=str(catalog))
    (folder / "home").mkdir()
    with dg.DagsterInstance.local_temp(str(folder / "home")) as instance:
        seconds, first = _tick(instance, resource, None)
        print(f"sensor, first tick over {files:,} lines: {seconds:.2f} s (goal < 30 s), {len(first.run_requests):,} run requests "
              f"(cap {sensors.MAX_RUNS_PER_TICK:,}), cursor {len(first.cursor):,} bytes (goal < 100 KB)")

        start = time.perf_counter()
        keys = [line.rsplit("/", 1)[-1].split(".")[0] for line in lines.splitlines()]
        keys = [f"scale.{k}" for k in keys]
        batch = sensors.MAX_RUNS_PER_TICK
        for offset in range(0, len(keys), batch):
            instance.add_dynamic_partitions("mapterhorn_files", keys[offset : offset + batch])
        added = time.perf_counter() - start
        print(f"adding {len(keys):,} partitions in batches of {batch:,}: {added:.1f} s "
              f"({len(keys) // batch} sensor ticks; at 60 s per tick the list is queued in {len(keys) / batch:.0f} min)")

        seconds, known = _tick(instance, resource, first.cursor)
        print(f"sensor, tick with every partition known: {seconds:.2f} s, {len(known.run_requests)} run requests, cursor {len(known.cursor)} bytes")
        seconds, steady = _tick(instance, resource, known.cursor)
        print(f"sensor, tick over the unchanged list: {seconds:.3f} s, {len(steady.run_requests)} run requests")


def event_log_per_file(folder: Path) -> None:
    os.environ["GNT_STORAGE_ROOT"] = str(folder / "storage")
    from gnt_assets.definitions import defs

    (folder / "home2").mkdir()
    with dg.DagsterInstance.local_temp(str(folder / "home2")) as instance:
        resources = {"mapterhorn_sources": defs.resources["mapterhorn_sources"]}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            result = mapterhorn_file_list_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        keys = [r.partition_key for r in result.run_requests if "1202" not in r.partition_key][:3]
        total, materialization_bytes, largest = 0, 0, 0
        for key in keys:
            run = dg.materialize([*defs.assets], selection=FILE_ASSETS, partition_key=key, instance=instance, resources=defs.resources,
                                 run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
            for entry in instance.all_logs(run.run_id):
                size = len(serialize_value(entry))
                total += size
                if entry.dagster_event and entry.dagster_event.is_step_materialization:
                    materialization_bytes += size
                    largest = max(largest, len(serialize_value(entry.dagster_event.event_specific_data.materialization)))
        print(f"event log: {total / len(keys):,.0f} bytes per file over {len(keys)} files (all events of its six steps and checks); "
              f"materialization events {materialization_bytes / len(keys):,.0f} bytes per file; largest materialization "
              f"(asset key, partition, metadata) {largest:,} bytes (goal: per-file metadata < 2 KB)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sensor_and_partitions(args.files, Path(folder))
        event_log_per_file(Path(folder))
    print(json.dumps({"not measured": ["backfill launch", "files per second", "per-file overhead vs plain calls", "PostgreSQL"]}))


if __name__ == "__main__":
    main()
