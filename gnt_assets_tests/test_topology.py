"""The topology a team deploys (deploy/docker-compose.yml), as local processes on loopback.

PostgreSQL 15 for the instance, moto for the S3-compatible object store (the storage root is the compose
file's s3://gnt/data), a Dask scheduler with two workers, the gRPC code server, the webserver and the daemon:
every command and variable is the compose file's, moved to loopback. One backfill launched through GraphQL
spans two pipelines whose compute runs on the Dask workers (raster tiles; the CONUS404 analysis-ready copy),
and what it leaves in the object store equals what the same assets make in one local process on a local
folder with a LocalCluster.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from distributed import Client
from upath import UPath

from gnt_assets.conus404.assets import DAILY_STORE, conus404_analysis_ready, conus404_daily
from gnt_assets.core.atomic import resolve_directory
from gnt_assets.core.stac_catalog import catalog_root, family_for, item_id_for
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.rasters.assets import grid_assets, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.local import sample_rasters
from gnt_assets_tests.dagster_dev import free_port
from gnt_assets_tests.deployment import (
    Loopback,
    Services,
    compose,
    launch_backfill,
    running_dagster,
    service_command,
    service_env,
    stop_instigators,
    wait_until,
)
from gnt_assets_tests.postgres_server import postgres_available, running_postgres
from gnt_assets_tests.s3_server import s3_server

pytestmark = pytest.mark.servers

RASTER = "landcover"
DAYS = ("2020-07-01", "2020-07-02")
RASTER_ASSETS = [raster_source, raster_tiles, *grid_assets, *resampled_assets]
CONUS404_ASSETS = [conus404_daily, conus404_analysis_ready]
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def partitions_by_assets() -> list[dict]:
    """The backfill's selection: one raster through both grids, two CONUS404 days and the copy that follows them."""
    partitioned = {raster_source.key: RASTER, raster_tiles.key: RASTER, conus404_daily.key: DAYS,
                   **{asset.key: RASTER for asset in resampled_assets}}
    selection = []
    for asset in [*RASTER_ASSETS, *CONUS404_ASSETS]:
        keys = partitioned.get(asset.key)
        entry = {"assetKey": {"path": asset.key.path}}
        if keys:
            first, last = (keys, keys) if isinstance(keys, str) else (keys[0], keys[-1])
            entry["partitions"] = {"range": {"start": first, "end": last}}
        selection.append(entry)
    return selection


def start_object_store_and_dask(services: Services, spec: dict, loopback: Loopback, endpoint) -> str:
    """moto stands in for the object-store service; the scheduler and its two workers run the compose commands."""
    loopback.ports[("object-store", "9000")] = int(endpoint.endpoint_url.rsplit(":", 1)[1])
    for port in spec["dask-scheduler"]["expose"]:
        loopback.ports[("dask-scheduler", str(port))] = free_port()
    services.start("dask-scheduler", service_command("dask-scheduler", spec["dask-scheduler"], loopback),
                   service_env(spec["dask-scheduler"], loopback, {}))
    address = f"tcp://{loopback.address('dask-scheduler', '8786')}"
    workers = spec["dask-worker"]["deploy"]["replicas"]
    for replica in range(workers):
        services.start(f"dask-worker-{replica + 1}", service_command("dask-worker", spec["dask-worker"], loopback),
                       service_env(spec["dask-worker"], loopback, {}))

    def connected() -> bool:
        with Client(address, timeout=5) as client:
            return len(client.scheduler_info()["workers"]) == workers

    wait_until("the Dask workers", connected, services)
    return address


def tasks_per_worker(address: str) -> dict[str, dict[str, int]]:
    """Per worker, how many tasks of each function it ran (the scheduler forgets released tasks, a worker's log does not)."""
    def executed(dask_worker) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in dask_worker.state.log:
            if len(event) > 2 and event[2] == "memory" and isinstance(event[0], str):
                name = event[0].split("-")[0]
                counts[name] = counts.get(name, 0) + 1
        return counts

    with Client(address, timeout=10) as client:
        return client.run(executed)


def seed_inputs(root: UPath, instance) -> None:
    """What the raster sensor would register: the sample raster in the watched folder, and its partition."""
    sample_rasters(root / "rasters" / "incoming", size=150)
    instance.add_dynamic_partitions("raster_sources", [RASTER])


@pytest.fixture(scope="module")
def topology(tmp_path_factory):
    """The deployment's outputs after the backfill, and the runs and Dask tasks that made them."""
    if not postgres_available():
        pytest.skip("PostgreSQL 15 server binaries (Debian postgresql-15) are not installed")
    folder = tmp_path_factory.mktemp("topology")
    services, loopback, spec = Services(folder), Loopback(folder), compose()["services"]
    with s3_server(bucket="gnt") as endpoint, running_postgres() as postgres, pytest.MonkeyPatch.context() as patch:
        try:
            address = start_object_store_and_dask(services, spec, loopback, endpoint)
            env = {**postgres, "DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}
            with running_dagster(services, spec, loopback, env, before_daemon=stop_instigators) as url:
                shared = service_env(spec["code-server"], loopback, env)
                for name in ("DAGSTER_HOME", "GNT_STORAGE_ROOT", "GNT_S3_ENDPOINT_URL", "GNT_DASK_SCHEDULER", "GNT_PROFILE",
                             "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", *postgres):
                    patch.setenv(name, shared[name])
                from gnt_assets.profiles import resources_for_profile

                root = resources_for_profile("local")["storage"].root_path
                with dg.DagsterInstance.get() as instance:
                    seed_inputs(root, instance)
                    backfill = launch_backfill(url, {"partitionsByAssets": partitions_by_assets()})

                    def finished() -> bool:
                        state = instance.get_backfill(backfill)
                        return state.status.value not in ("REQUESTED", "CANCELING") and all(
                            r.status in DONE for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill})))

                    wait_until("the backfill to finish", finished, services, timeout=900, every=3)
                    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))
                    yield {"root": root, "runs": runs, "status": instance.get_backfill(backfill).status.value,
                           "tasks": tasks_per_worker(address), "scheduler": shared["GNT_DASK_SCHEDULER"]}
        finally:
            services.stop()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, topology):
    """The same assets in one process: local folder, LocalCluster, SQLite instance."""
    from gnt_assets.definitions import code_location
    from gnt_assets.profiles import resources_for_profile

    root = tmp_path_factory.mktemp("local-run") / "data"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GNT_STORAGE_ROOT", str(root))
        for name in ("GNT_S3_ENDPOINT_URL", "GNT_DASK_SCHEDULER", "DAGSTER_HOME"):
            patch.delenv(name, raising=False)
        resources = resources_for_profile("local")
        every = [*code_location().assets, *code_location().asset_checks]
        with dg.instance_for_test() as instance:
            seed_inputs(resources["storage"].root_path, instance)
            dg.materialize(every, selection=[a.key for a in grid_assets], instance=instance, resources=resources)
            dg.materialize(every, selection=[a.key for a in (raster_source, raster_tiles, *resampled_assets)],
                           partition_key=RASTER, instance=instance, resources=resources)
            for day in DAYS:
                dg.materialize(every, selection=[conus404_daily.key], partition_key=day, instance=instance, resources=resources)
            dg.materialize(every, selection=[conus404_analysis_ready.key], instance=instance, resources=resources)
    return resources["storage"].root_path


def test_the_backfill_spans_two_pipelines_and_succeeds(topology):
    runs = topology["runs"]
    assert topology["status"] == "COMPLETED_SUCCESS", [(r.run_id, r.status) for r in runs]
    assert {r.status for r in runs} == {dg.DagsterRunStatus.SUCCESS}
    made = {key for r in runs for key in (r.asset_selection or ())}
    assert {raster_tiles.key, conus404_daily.key, conus404_analysis_ready.key} <= made
    assert topology["scheduler"].startswith("tcp://127.0.0.1:")


def test_the_compute_ran_on_both_dask_workers(topology):
    tasks = topology["tasks"]
    assert len(tasks) == 2
    ran = [counts.get("write_tile", 0) + counts.get("write_block", 0) for counts in tasks.values()]
    assert all(ran), tasks  # each worker took some of the tiles and blocks
    assert sum(counts.get("write_block", 0) for counts in tasks.values()) >= 1


def test_the_object_store_holds_what_a_local_run_makes(topology, local_run):
    deployed = topology["root"]
    assert deployed.protocol == "s3" and local_run.protocol in ("", "file")

    def opened(root: UPath, *parts: str) -> xr.Dataset:
        path = resolve_directory(root.joinpath(*parts))
        options = {"storage_options": path.storage_options} if path.protocol == "s3" else {}
        return xr.open_zarr(str(path) if path.protocol == "s3" else path.path, consolidated=False, **options)

    xr.testing.assert_equal(opened(deployed, "rasters", "tiles", RASTER, "tiles.zarr").load(),
                            opened(local_run, "rasters", "tiles", RASTER, "tiles.zarr").load())
    for asset in resampled_assets:
        grid = asset.key.path[-1].removeprefix("resampled_")
        ours, theirs = (pd.DataFrame(read_table(root / "rasters" / "resampled" / grid / f"{RASTER}.parquet")) for root in (deployed, local_run))
        pd.testing.assert_frame_equal(ours.drop(columns="geometry"), theirs.drop(columns="geometry"))
    days = slice(*DAYS)
    daily = [opened(root, *DAILY_STORE).sel(time=days).load() for root in (deployed, local_run)]
    xr.testing.assert_equal(*daily)
    ready = [opened(root, "conus404", "analysis_ready.zarr").sel(time=days).load() for root in (deployed, local_run)]
    xr.testing.assert_equal(*ready)
    assert ready[0].sizes["time"] == len(DAYS) and all(np.isfinite(ready[0][name]).any() for name in ready[0].data_vars)


def test_the_deployment_catalogs_its_outputs_in_the_object_store(topology):
    """Every output's STAC item is written through the object store's own endpoint (the deployment's MinIO),
    not botocore's default AWS one."""
    catalog = catalog_root(topology["root"])
    for asset, partition in ((raster_tiles, RASTER), (conus404_daily, DAYS[0]), (conus404_daily, DAYS[1]), (conus404_analysis_ready, None)):
        name = asset.key.to_user_string()
        item = item_id_for(name, partition)
        assert (catalog / family_for(name) / item / f"{item}.json").exists(), (name, partition)
