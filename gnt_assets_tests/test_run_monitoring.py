"""Run-worker heartbeats and the deployment launcher's health check (the end-to-end case, a run lost with its
code server on PostgreSQL, is in test_instance_postgres)."""

from __future__ import annotations

import time

import dagster as dg
import pytest
from dagster._core.launcher.base import WorkerStatus

from gnt_assets.definitions import code_location
from gnt_assets.run_monitoring import DEFAULT_EXECUTOR, HeartbeatingExecutorDefinition, heartbeat_key

LAUNCHER = {"module": "gnt_assets.run_monitoring", "class": "HeartbeatRunLauncher",
            "config": {"heartbeat_interval_seconds": 0.2, "heartbeat_timeout_seconds": 5}}


@dg.op
def beats_a_few_times() -> None:
    time.sleep(1)


@dg.job(executor_def=DEFAULT_EXECUTOR)
def heartbeat_probe() -> None:
    beats_a_few_times()


def run_probe(instance) -> dg.DagsterRun:
    result = dg.execute_job(dg.reconstructable(heartbeat_probe), instance=instance)
    assert result.success
    return result.dagster_run


def heartbeat_of(instance, run_id: str) -> str | None:
    return instance.run_storage.get_cursor_values({heartbeat_key(run_id)}).get(heartbeat_key(run_id))


def test_every_job_of_the_code_location_sends_heartbeats():
    repository = code_location().get_repository_def()
    plain = [job.name for job in repository.get_all_jobs() if not isinstance(job.executor_def, HeartbeatingExecutorDefinition)]
    assert plain == ["reference_data_on_dask"]  # dagster-dask refuses any executor but its own class


def test_a_run_worker_beats_while_it_runs_and_the_launcher_reads_it():
    with dg.instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        run = run_probe(instance)
        beat = float(heartbeat_of(instance, run.run_id))
        assert 0 <= time.time() - beat < 5
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING and "last heartbeat" in health.msg


def test_a_silent_worker_waits_for_its_code_server_before_it_is_called_lost():
    with dg.instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        run = run_probe(instance)
        instance.run_storage.set_cursor_values({heartbeat_key(run.run_id): repr(time.time() - 60)})
        # this run was started without a code server: there is none to answer, so the verdict waits
        health = instance.run_launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.RUNNING and "waiting for its code server" in health.msg
        unknown = run._replace(run_id="0" * 36)
        assert instance.run_launcher.check_run_worker_health(unknown).status == WorkerStatus.RUNNING  # no heartbeat yet


@pytest.mark.parametrize("overrides", [{}, {"run_launcher": {"module": "dagster", "class": "DefaultRunLauncher"}}])
def test_no_heartbeat_is_written_under_another_launcher(overrides):
    with dg.instance_for_test(overrides=overrides) as instance:
        run = run_probe(instance)
        assert heartbeat_of(instance, run.run_id) is None
