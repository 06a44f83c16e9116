"""The deployment instance (deploy/dagster.postgres.yaml) on a real PostgreSQL 15 on loopback.

Runs go through the queued run coordinator and the daemon exactly as in a
deployment: two partitioned runs overlap, and a failed run is retried.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from gnt_assets_tests.postgres_server import postgres_available, running_postgres

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

LOCATION = textwrap.dedent(
    """
    import os, time
    from pathlib import Path
    import dagster as dg

    halves = dg.StaticPartitionsDefinition(["north", "south"])

    @dg.asset(partitions_def=halves)
    def slow_tiles(context):
        time.sleep(10)
        return dg.MaterializeResult(metadata={"partition": context.partition_key})

    @dg.asset
    def flaky_download():
        marker = Path(os.environ["FLAKY_MARKER"])
        if not marker.exists():
            marker.write_text("failed once")
            raise RuntimeError("connection reset by source")

    defs = dg.Definitions(
        assets=[slow_tiles, flaky_download],
        jobs=[
            dg.define_asset_job("slow_job", [slow_tiles], partitions_def=halves),
            dg.define_asset_job("flaky_job", [flaky_download]),
        ],
    )
    """
)


@pytest.fixture(scope="module")
def postgres():
    if not postgres_available():
        pytest.skip("PostgreSQL 15 server binaries (Debian postgresql-15) are not installed")
    with running_postgres() as settings:
        yield settings


@pytest.fixture
def deployment(postgres, tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.postgres.yaml", home / "dagster.yaml")
    (tmp_path / "location.py").write_text(LOCATION)
    (tmp_path / "workspace.yaml").write_text(f"load_from:\n  - python_file: {tmp_path / 'location.py'}\n")
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "FLAKY_MARKER": str(tmp_path / "flaky")}
    for name, value in {**postgres, "DAGSTER_HOME": str(home)}.items():
        monkeypatch.setenv(name, value)
    daemon = subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", tmp_path / "workspace.yaml"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "daemon.log", "w"), start_new_session=True,
    )
    try:
        yield env, tmp_path
    finally:
        os.killpg(daemon.pid, 15)
        daemon.wait(30)


def launch_all(env, folder, launches):
    """Submit runs to the queue at once, as a backfill or several users would."""
    processes = [
        subprocess.Popen(
            [BIN / "dagster", "job", "launch", "-w", folder / "workspace.yaml", "-j", job, "--tags", json.dumps(tags)],
            env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for job, tags in launches
    ]
    for process in processes:
        _, error = process.communicate(timeout=120)
        assert process.returncode == 0, error.decode()


def wait_for(instance, predicate, timeout=150):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = instance.get_runs()
        if predicate(runs):
            return runs
        time.sleep(1)
    pytest.fail(f"timed out; runs: {[(r.job_name, r.status, r.tags) for r in instance.get_runs()]}")


def test_postgres_instance_runs_partitions_concurrently_and_retries_failures(deployment):
    env, folder = deployment
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PooledPostgresRunStorage"
        assert instance.run_storage.postgres_url.startswith("postgresql+psycopg2://")
        launch_all(
            env,
            folder,
            [
                ("slow_job", {"dagster/partition": "north"}),
                ("slow_job", {"dagster/partition": "south"}),
                ("flaky_job", {"dagster/retry_on_asset_or_op_failure": "true"}),
            ],
        )

        done = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE}
        runs = wait_for(
            instance,
            lambda runs: sum(r.job_name == "slow_job" and r.status in done for r in runs) == 2
            and any(r.job_name == "flaky_job" and r.status == dg.DagsterRunStatus.SUCCESS for r in runs),
        )
        slow = [r for r in runs if r.job_name == "slow_job"]
        assert {r.tags["dagster/partition"] for r in slow} == {"north", "south"}
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in slow)
        records = {r.dagster_run.run_id: r for r in instance.get_run_records()}
        (first, second) = sorted((records[r.run_id] for r in slow), key=lambda rec: rec.start_time)
        assert second.start_time < first.end_time, "the two partitions did not run at the same time"
        assert instance.get_materialized_partitions(dg.AssetKey("slow_tiles")) == {"north", "south"}

        flaky = sorted((r for r in runs if r.job_name == "flaky_job"), key=lambda r: int(r.tags.get("dagster/retry_number", 0)))
        assert [r.status for r in flaky] == [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS]
        assert flaky[1].tags["dagster/retry_number"] == "1"
