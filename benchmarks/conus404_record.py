"""The whole CONUS404 record (15,706 days) as one backfill on the PostgreSQL deployment instance.

Starts PostgreSQL 15 on loopback and `dagster dev` (webserver + daemon) with deploy/dagster.postgres.yaml and
the services' DAGSTER_EVENT_BATCH_SIZE from deploy/docker-compose.yml, and a code location whose source is fast
(a tiny generated grid, ``benchmarks/conus404_record_location.py``),
then, with the goal beside each figure:

- launches a backfill of every conus404_daily partition through the UI's GraphQL API and times the
  launch and the daemon's creation of its runs (DAYS_PER_RUN days per run; goal < 2 min);
- lets the queue drain for ``--drain`` seconds and counts runs finished per minute on this machine
  (days past the fast source's window fail at once, naming the window: they count as drained);
- meanwhile evaluates the shared alert sensor and the failure-report sensor against the live instance
  and times each tick (goal < 30 s);
- cancels the backfill, and on local disk measures the cost of adding one day to an analysis-ready
  copy that already holds a year, against the cost of writing that day (goal < 5x).

    .venv/bin/python benchmarks/conus404_record.py [--drain 180] [--create-timeout 900] [--shape 254 342] [--workdir /tmp/c404-record]
        [--skip-backfill | --skip-copy]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CANCEL = """
mutation($id: String!) { cancelPartitionBackfill(backfillId: $id) { __typename } }"""
RECORD_DAYS = 15_706


def row(name: str, value: str, goal: str = "") -> None:
    print(f"  {name:<58} {value:>16}   {goal}", flush=True)


def timed_tick(sensor, instance, resources=None) -> tuple[float, str]:
    import dagster as dg

    started = time.perf_counter()
    with dg.build_sensor_context(instance=instance, resources=resources or {}) as context:
        result = sensor(context)
    return time.perf_counter() - started, type(result).__name__


def record_backfill(workdir: Path, drain: float, create_timeout: float) -> None:
    import dagster as dg

    from gnt_assets.conus404.assets import DAYS_PER_RUN
    from gnt_assets.conus404.local import ensure_hourly_store
    from gnt_assets.conus404.sensors import conus404_failure_report_sensor
    from gnt_assets.resources.alerts import AlertSinksResource
    from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
    from gnt_assets_tests.dagster_dev import running_dagster_dev
    from gnt_assets_tests.deployment import LAUNCH_BACKFILL, compose
    from gnt_assets_tests.postgres_server import postgres_available, running_postgres

    if not postgres_available():
        sys.exit("PostgreSQL 15 server binaries (Debian postgresql-15) are not installed")
    source_days = 60
    source_root = workdir / "source"
    from upath import UPath

    ensure_hourly_store(UPath(source_root), date(1979, 10, 1), source_days, (8, 10))  # before any run reads it
    with running_postgres(max_connections=200) as pg:
        batching = {"DAGSTER_EVENT_BATCH_SIZE": compose()["x-gnt"]["environment"]["DAGSTER_EVENT_BATCH_SIZE"]}  # as deployed
        env = {**pg, **batching, "GNT_BENCH_SOURCE_ROOT": str(source_root), "GNT_BENCH_SOURCE_DAYS": str(source_days)}
        os.environ.update(env)
        with running_dagster_dev(workdir, location=("-f", str(REPO / "benchmarks" / "conus404_record_location.py")),
                                 instance_config=REPO / "deploy" / "dagster.postgres.yaml", **env) as url:
            os.environ["DAGSTER_HOME"] = str(workdir / "home")
            instance = dg.DagsterInstance.get()
            print(f"instance: {type(instance.run_storage).__name__}; webserver {url}")
            started = time.perf_counter()
            params = {"assetSelection": [{"path": ["conus404_daily"]}], "allPartitions": True, "title": "whole record"}
            answer = requests.post(f"{url}/graphql", json={"query": LAUNCH_BACKFILL, "variables": {"params": params}}, timeout=600).json()
            launched = answer["data"]["launchPartitionBackfill"]
            if launched["__typename"] != "LaunchBackfillSuccess":
                sys.exit(f"backfill refused: {launched}")
            backfill_id = launched["backfillId"]
            submitted = time.perf_counter() - started
            expected = -(-RECORD_DAYS // DAYS_PER_RUN)
            by_backfill = dg.RunsFilter(tags={"dagster/backfill": backfill_id})
            created, deadline = 0, time.monotonic() + create_timeout
            progress = time.monotonic() + 30
            while created < expected and time.monotonic() < deadline:
                created = instance.get_runs_count(by_backfill)
                if time.monotonic() > progress:
                    print(f"    {time.perf_counter() - started:.0f} s: {created} runs created", flush=True)
                    progress += 30
                time.sleep(2)
            all_created = time.perf_counter() - started
            print("Launch (goal: whole record launched in < 2 min)")
            row("GraphQL launchPartitionBackfill answered", f"{submitted:.1f} s")
            row("runs created by the daemon", f"{created} of {expected}")
            row("launch to last run created", f"{all_created:.1f} s", f"goal < 120 s -> {'met' if all_created < 120 and created == expected else 'NOT met'}")

            finished = dg.RunsFilter(tags={"dagster/backfill": backfill_id},
                                     statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED])
            alerts = {"alerts": AlertSinksResource(start_from="beginning")}
            ticks: dict[str, list[float]] = {"check_failure_alert_sensor": [], "conus404_failure_report_sensor": []}
            done_before, drain_start = instance.get_runs_count(finished), time.perf_counter()
            while time.perf_counter() - drain_start < drain:
                for name, sensor, resources in (("check_failure_alert_sensor", check_failure_alert_sensor, alerts),
                                                ("conus404_failure_report_sensor", conus404_failure_report_sensor, None)):
                    seconds, outcome = timed_tick(sensor, instance, resources)
                    ticks[name].append(seconds)
                    print(f"    tick {name}: {seconds:.1f} s ({outcome})", flush=True)
                time.sleep(20)
            drained = instance.get_runs_count(finished) - done_before
            minutes = (time.perf_counter() - drain_start) / 60
            print(f"Drain ({minutes:.1f} min, max_concurrent_runs from deploy/dagster.postgres.yaml)")
            row("runs finished", f"{drained}")
            row("runs per minute", f"{drained / minutes:.1f}", f"-> {DAYS_PER_RUN * drained / minutes:.0f} days/min at most; "
                f"whole record ~{expected / max(drained / minutes, 1e-9) / 60:.1f} h at this rate")
            print("Sensor ticks while the backfill runs (goal < 30 s each)")
            for name, values in ticks.items():
                worst = max(values)
                row(f"{name}: {len(values)} ticks, median / max", f"{sorted(values)[len(values) // 2]:.2f} / {worst:.2f} s",
                    f"goal < 30 s -> {'met' if worst < 30 else 'NOT met'}")
            requests.post(f"{url}/graphql", json={"query": CANCEL, "variables": {"id": backfill_id}}, timeout=120)


def analysis_ready_cost(workdir: Path, shape: tuple[int, int]) -> None:
    """A daily store holding a year (one real aggregated day, written at each date), its analysis-ready
    copy, then one more day: its write against the copy's update."""
    import numpy as np
    import xarray as xr
    from dask.distributed import Client
    from upath import UPath

    from gnt_assets.conus404.aggregation import aggregate_day
    from gnt_assets.conus404.analysis_ready import update_copy
    from gnt_assets.conus404.daily_store import daily_template, day_dataset, ensure_store
    from gnt_assets.conus404.local import ensure_hourly_store
    from gnt_assets.conus404.variables import DEFAULT_VARIABLES, resolve_variables
    from gnt_assets.core.zarr_regions import write_region

    first = date(2020, 1, 1)
    hourly = xr.open_zarr(ensure_hourly_store(UPath(workdir / "hourly"), first, 1, shape).path, consolidated=True, chunks=None)
    variables = resolve_variables(DEFAULT_VARIABLES)
    day = day_dataset(hourly, aggregate_day(hourly, first, variables, accumulation_offset=1)).compute()
    daily, copy = UPath(workdir / "daily.zarr"), UPath(workdir / "analysis_ready.zarr")
    ensure_store(daily, daily_template(hourly, variables, "1979-10-01", "2022-10-01"))

    def write(when: date) -> float:
        started = time.perf_counter()
        write_region(daily, day.assign_coords(time=[np.datetime64(when, "ns")]))
        return time.perf_counter() - started

    year = [first + timedelta(days=i) for i in range(366)]
    for when in year[:-1]:
        write(when)
    new_day = year[-1]
    with Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as client:
        started = time.perf_counter()
        update_copy(daily, copy, year[:-1], {str(d) for d in year[:-1]}, cursor=None, client=client)
        build = time.perf_counter() - started
        write_seconds = write(new_day)
        started = time.perf_counter()
        _, ledger, written = update_copy(daily, copy, year, {str(new_day)}, cursor=None, client=client)
        update = time.perf_counter() - started
    ratio = update / write_seconds
    print(f"Analysis-ready copy ({shape[0]} x {shape[1]} cells, {len(day.data_vars)} stored variables)")
    row("copy of a year built", f"{build:.1f} s")
    row(f"writing day {new_day} into the daily store", f"{write_seconds:.2f} s")
    row(f"adding it to the copy ({len(ledger.last_blocks)} block, {written / 2**20:.0f} MiB of day data)", f"{update:.2f} s")
    row("ratio add-to-copy / write-day", f"{ratio:.1f}x", f"goal < 5x -> {'met' if ratio < 5 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to let the backfill's runs drain")
    parser.add_argument("--shape", type=int, nargs=2, default=(254, 342), help="grid of the analysis-ready measurement")
    parser.add_argument("--create-timeout", type=float, default=900.0, help="seconds to wait for the daemon to create every run")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--skip-copy", action="store_true", help="skip the analysis-ready measurement")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="c404-record-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"CONUS404 record benchmark in {workdir}")
    if not args.skip_backfill:
        record_backfill(workdir / "record", args.drain, args.create_timeout)
    if not args.skip_copy:
        analysis_ready_cost(workdir / "analysis_ready", tuple(args.shape))


if __name__ == "__main__":
    main()
