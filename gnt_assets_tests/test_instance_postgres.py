"""The deployment instance (deploy/dagster.postgres.yaml) on a real PostgreSQL 15, running gnt_assets itself.

The code server, webserver and daemon are started with the commands of deploy/docker-compose.yml (storage on
a local folder here; test_topology adds the object store and Dask). On mining runs it proves what the
shipped file configures: the gee pool never runs more steps at once than its limit, runs tagged
gnt/pipeline=mining never start beyond their limit, a run whose worker is killed is marked failed (by the code
server that started it) and retried, an asset's own failure is not retried (retry_on_asset_or_op_failure is
false), and a run whose worker is lost with its code server is failed by run monitoring, from the stopped
heartbeats, and retried once the code server is back. The instance file is the shipped one with a 1 s
monitoring poll and heartbeats every second, timing out after 5 s.
"""

from __future__ import annotations

import contextlib
import re
import time
from copy import deepcopy

import dagster as dg
import psutil
import pytest
import yaml

from gnt_assets.run_monitoring import heartbeat_key
from gnt_assets_tests.deployment import (
    DEPLOY,
    REPOSITORY_SELECTOR,
    Loopback,
    Services,
    compose,
    launch_backfill,
    launch_run,
    running_dagster,
    service_command,
    service_env,
    stop_instigators,
    wait_until,
)
from gnt_assets_tests.postgres_server import postgres_available, running_postgres

pytestmark = pytest.mark.servers

SHIPPED = yaml.safe_load((DEPLOY / "dagster.postgres.yaml").read_text())
GEE_SLOTS = 1  # below the configured 2, so two export runs contend for it
EXPORTS = ["BWA|2019", "NAM|2020"]
IN_PROCESS = {"execution": {"config": {"in_process": {}}}}  # one process per run: 2 shared cores start fewer interpreters
DONE = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
HEARTBEAT_TIMEOUT = 5
LOST_DAY = "2020-07-01"  # a day the local CONUS404 source serves; its run takes several seconds
MINING_TAG = next(limit for limit in SHIPPED["concurrency"]["runs"]["tag_concurrency_limits"] if limit["key"] == "gnt/pipeline")


def instance_yaml_for_test() -> str:
    config = deepcopy(SHIPPED)
    config["run_monitoring"]["poll_interval_seconds"] = 1
    config["run_launcher"]["config"] = {"heartbeat_interval_seconds": 1, "heartbeat_timeout_seconds": HEARTBEAT_TIMEOUT}
    return yaml.safe_dump(config)


def messages(instance, run_id: str, event_type=dg.DagsterEventType.ENGINE_EVENT) -> list[str]:
    return [e.dagster_event.message or "" for e in instance.all_logs(run_id, of_type=event_type) if e.dagster_event]


def worker_pid(instance, run_id: str) -> int | None:
    for message in messages(instance, run_id):
        found = re.match(r"Started process for run \(pid: (\d+)\)", message)
        if found:
            return int(found.group(1))
    return None


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def step_intervals(instance, run_ids: list[str], step: str) -> list[tuple[float, float]]:
    intervals = []
    for run_id in run_ids:
        events = {e.dagster_event_type: e.timestamp for e in instance.all_logs(run_id) if e.step_key == step and e.dagster_event}
        start = events[dg.DagsterEventType.STEP_START]
        intervals.append((start, events.get(dg.DagsterEventType.STEP_SUCCESS, events.get(dg.DagsterEventType.STEP_FAILURE))))
    return intervals


def seed_mining_inputs(instance) -> None:
    """The export runs' inputs, materialized in process on the same instance and storage: the polygons
    (which add the country partitions) and the clusters of the two demo countries."""
    from gnt_assets.definitions import code_location
    from gnt_assets.demo_runs import QUIET_RUN_CONFIG, run_job
    from gnt_assets.mining.demo import COUNTRIES, RUN_CONFIG

    defs = code_location()
    run_job(defs, instance, "mining_demo", ["mine_polygons"])
    for country in COUNTRIES:
        run_job(defs, instance, "mining_demo", ["mining_clusters"], country, run_config={**QUIET_RUN_CONFIG, **RUN_CONFIG})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """Launches every scenario at once against the running services, waits for all of them, and yields
    the instance and the run ids by scenario."""
    if not postgres_available():
        pytest.skip("PostgreSQL 15 server binaries (Debian postgresql-15) are not installed")
    folder = tmp_path_factory.mktemp("deployment")
    services = Services(folder)
    with running_postgres() as postgres, pytest.MonkeyPatch.context() as patch:
        env = {**postgres, "GNT_STORAGE_ROOT": str(folder / "data"), "GNT_S3_ENDPOINT_URL": "", "GNT_DASK_SCHEDULER": "",
               "GNT_PROFILE": "local", "GNT_POOL_GEE": str(GEE_SLOTS),
               "DAGSTER_GRPC_TIMEOUT_SECONDS": "300"}  # a run's launch waits for its worker to import gnt_assets, slow on 2 busy cores
        loopback = Loopback(folder)
        try:
            with running_dagster(services, compose()["services"], loopback, env, instance_yaml=instance_yaml_for_test(),
                                 before_daemon=stop_instigators) as url:
                home = loopback.mounts["/opt/dagster/home"]
                for name, value in {**env, "DAGSTER_HOME": str(home)}.items():
                    patch.setenv(name, value)
                with dg.DagsterInstance.get() as instance:
                    assert type(instance.run_storage).__name__ == "PooledPostgresRunStorage"
                    seed_mining_inputs(instance)
                    runs = launch_scenarios(instance, url, services)
                    runs["lost"] = lose_the_code_server(instance, url, services, loopback, env)
                    yield instance, runs
        finally:
            services.stop()


def kill_tree(pid: int) -> None:
    processes = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=30)


def heartbeat(instance, run_id: str) -> str | None:
    return instance.run_storage.get_cursor_values({heartbeat_key(run_id)}).get(heartbeat_key(run_id))


def launch_scenarios(instance, url: str, services: Services) -> dict:
    """Everything at once, as a busy deployment sees it: a backfill of export runs (the gee pool), a janitor run
    that loses its worker and a region run whose input is missing."""
    wait_until("the daemon to apply the pool limits", lambda: instance.event_log_storage.get_concurrency_info("gee").slot_count == GEE_SLOTS, services)
    instance.event_log_storage.claim_concurrency_slot("gee", "test-holder", "holder")  # the only slot, held for a while
    backfill = launch_backfill(url, {"selector": {"partitionSetName": "mining_exports_job_partition_set", "repositorySelector": REPOSITORY_SELECTOR},
                                     "partitionNames": EXPORTS})
    killed = launch_run(url, "janitor", run_config=IN_PROCESS)
    # no ZAF clusters were made: the region step's input is missing
    failing = launch_run(url, "mining_region_job", {"dagster/partition": "ZAF|2019"}, run_config=IN_PROCESS)

    def exports() -> list[str]:
        return [r.run_id for r in instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill}))]

    def held_by_pool() -> list[str]:
        log = services.tail("daemon", 10**7)
        return [r for r in exports() if re.search(rf"Run {r} is blocked by global concurrency limits: {{\"gee\"", log)] if len(exports()) == len(EXPORTS) else []

    def retries() -> list[dg.DagsterRun]:
        return list(instance.get_runs(dg.RunsFilter(tags={"dagster/root_run_id": killed})))

    kill_tree(wait_until("the janitor run's worker", lambda: worker_pid(instance, killed), services))
    blocked = wait_until("the queue to hold export runs for the gee pool", held_by_pool, services)
    held = {r: (instance.get_run_by_id(r).status, messages(instance, r, dg.DagsterEventType.STEP_START)) for r in exports()}
    instance.event_log_storage.free_concurrency_slot_for_step("test-holder", "holder")
    wait_until("every run to finish", lambda: all(instance.get_run_by_id(r).status in DONE for r in [*exports(), killed, failing])
               and any(r.status == dg.DagsterRunStatus.SUCCESS for r in retries()), services, timeout=240)
    return {"exports": exports(), "blocked": blocked, "held": held, "killed": killed, "retries": [r.run_id for r in retries()],
            "failing": failing}


def lose_the_code_server(instance, url: str, services: Services, loopback: Loopback, env: dict[str, str]) -> dict:
    """The code server dies with the run worker it started (a restarted container, a lost machine) and comes
    back: nothing is left to report the run, so only the monitor can fail it, from its stopped heartbeats."""
    lost = launch_run(url, "conus404_catchup_job", {"dagster/partition": LOST_DAY}, run_config=IN_PROCESS)
    wait_until("the CONUS404 run's heartbeat", lambda: instance.get_run_by_id(lost).status == dg.DagsterRunStatus.STARTED
               and heartbeat(instance, lost), services, every=0.2)
    kill_tree(services.processes["code-server"].pid)
    spec = compose()["services"]["code-server"]
    services.start("code-server", service_command("code-server", spec, loopback), service_env(spec, loopback, env))
    wait_until("the monitor to fail the lost run", lambda: instance.get_run_by_id(lost).status == dg.DagsterRunStatus.FAILURE,
               services, timeout=120)
    failed_at = time.time()

    def retried() -> list[dg.DagsterRun]:
        return list(instance.get_runs(dg.RunsFilter(tags={"dagster/root_run_id": lost})))

    # its worker imports gnt_assets once the restarted code server answers: minutes on 2 busy cores
    try:
        wait_until("the lost run's retry to succeed", lambda: any(r.status == dg.DagsterRunStatus.SUCCESS for r in retried()),
                   services, timeout=420)
    except pytest.fail.Exception as error:
        states = [(r.run_id[:8], r.status.value, r.tags.get("dagster/retry_number")) for r in retried()]
        raise pytest.fail.Exception(f"retries of {lost[:8]} (id, status, retry number): {states}\n{error}") from error
    return {"run": lost, "silent_for": failed_at - float(heartbeat(instance, lost)), "retries": [r.run_id for r in retried()]}


def test_a_run_lost_with_its_code_server_is_failed_by_the_monitor_and_retried(deployment):
    instance, runs = deployment
    lost = runs["lost"]
    assert SHIPPED["run_launcher"]["class"] == "HeartbeatRunLauncher" and SHIPPED["run_monitoring"]["enabled"]
    assert instance.get_run_by_id(lost["run"]).status == dg.DagsterRunStatus.FAILURE
    (failure,) = messages(instance, lost["run"], dg.DagsterEventType.RUN_FAILURE)
    assert "sent no heartbeat" in failure, failure  # the monitor's verdict, not the code server's
    assert not any("was terminated by signal" in m for m in messages(instance, lost["run"]))
    # failed after the timeout, not before, and within a few monitor polls of it
    assert HEARTBEAT_TIMEOUT < lost["silent_for"] < HEARTBEAT_TIMEOUT + 30
    (retry,) = lost["retries"][:1]
    assert instance.get_run_by_id(retry).tags["dagster/retry_number"] == "1"
    assert instance.get_run_by_id(retry).status == dg.DagsterRunStatus.SUCCESS


def test_the_gee_pool_never_runs_more_export_steps_than_its_limit(deployment):
    instance, runs = deployment
    assert instance.event_log_storage.get_concurrency_info("gee").slot_count == GEE_SLOTS
    # while the test held the only slot, the queue kept the export runs back and no export step started
    assert runs["blocked"] and all(status == dg.DagsterRunStatus.QUEUED and not starts for status, starts in runs["held"].values())
    assert [instance.get_run_by_id(r).status for r in runs["exports"]] == [dg.DagsterRunStatus.SUCCESS] * len(EXPORTS)
    assert max_overlap(step_intervals(instance, runs["exports"], "landsat_exports")) == GEE_SLOTS


def test_mining_runs_carry_the_tag_and_never_start_beyond_its_limit(deployment):
    instance, runs = deployment
    records = instance.get_run_records(dg.RunsFilter(tags={MINING_TAG["key"]: MINING_TAG["value"]}))
    assert {r.dagster_run.run_id for r in records} >= {*runs["exports"], runs["killed"], runs["failing"]}
    intervals = [(r.start_time, r.end_time) for r in records if r.start_time]
    assert max_overlap(intervals) == MINING_TAG["limit"]  # reached, never passed: 4 runs were queued at once


def test_a_run_whose_worker_is_killed_is_marked_failed_and_retried(deployment):
    instance, runs = deployment
    assert instance.get_run_by_id(runs["killed"]).status == dg.DagsterRunStatus.FAILURE
    assert any(f"Run execution process for {runs['killed']} was terminated by signal 9" in m for m in messages(instance, runs["killed"]))
    (retry,) = runs["retries"][:1]
    assert instance.get_run_by_id(retry).tags["dagster/retry_number"] == "1"
    assert instance.get_run_by_id(retry).status == dg.DagsterRunStatus.SUCCESS
    assert SHIPPED["run_retries"]["enabled"] and SHIPPED["run_retries"]["max_retries"] >= 1


def test_an_asset_failure_is_not_retried_as_configured(deployment):
    instance, runs = deployment
    assert SHIPPED["run_retries"]["retry_on_asset_or_op_failure"] is False
    assert instance.get_run_by_id(runs["failing"]).status == dg.DagsterRunStatus.FAILURE
    assert not instance.get_runs(dg.RunsFilter(tags={"dagster/parent_run_id": runs["failing"]}))
    assert any("Not retrying run since it failed due to an asset or op failure" in m for m in messages(instance, runs["failing"]))
