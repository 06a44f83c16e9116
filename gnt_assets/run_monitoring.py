"""Run-worker heartbeats, so run monitoring can tell a lost run worker from a busy one.

Dagster's ``DefaultRunLauncher`` offers the monitor no health check: a run whose worker dies with its code
server (a restarted container, a lost node) stays STARTED until ``max_runtime_seconds`` (12 hours here).
Every executor of the code location is wrapped by ``heartbeating``: while a run's plan executes, its worker
writes the time to the instance's key-value store every ``heartbeat_interval_seconds``. The deployment's
``HeartbeatRunLauncher`` (deploy/dagster.postgres.yaml) launches runs as the default launcher does and tells
the monitor a worker is gone once its heartbeat is older than ``heartbeat_timeout_seconds`` and the code
server that started it answers again; the monitor then fails the run and run retries start it again. With any other launcher no heartbeat is written.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import dagster as dg
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._serdes import ConfigurableClassData

HEARTBEAT_KEY = "gnt/run_worker_heartbeat/{run_id}"


def heartbeat_key(run_id: str) -> str:
    return HEARTBEAT_KEY.format(run_id=run_id)


class HeartbeatRunLauncher(DefaultRunLauncher):
    """The default launcher (runs start in the code server) with a health check read from the heartbeats."""

    def __init__(self, inst_data: ConfigurableClassData | None = None, heartbeat_interval_seconds: float = 15,
                 heartbeat_timeout_seconds: float = 120):
        super().__init__(inst_data=inst_data)
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.heartbeat_timeout_seconds = heartbeat_timeout_seconds

    @classmethod
    def config_type(cls):
        return {
            "heartbeat_interval_seconds": dg.Field(float, is_required=False, default_value=15.0),
            "heartbeat_timeout_seconds": dg.Field(float, is_required=False, default_value=120.0),
        }

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        beat = self._instance.run_storage.get_cursor_values({heartbeat_key(run.run_id)}).get(heartbeat_key(run.run_id))
        if not beat:
            # no executor of ours ran it (or not yet): only the code server and max_runtime watch it
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no heartbeat recorded for this run")
        silent = time.time() - float(beat)
        if silent <= self.heartbeat_timeout_seconds:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"last heartbeat {silent:.0f} s ago")
        if not self._code_server_answers(run.run_id):
            # Failing the run now would lose its retry: the retry daemon cannot plan a run without the code
            # server and does not try again. The verdict waits for the code server to be back.
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"no heartbeat for {silent:.0f} s; waiting for its code server")
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"the run worker sent no heartbeat for {silent:.0f} s (timeout {self.heartbeat_timeout_seconds:g} s): "
            "it was lost, with its code server or its machine",
        )


    def _code_server_answers(self, run_id: str) -> bool:
        client = self._get_grpc_client_for_termination(run_id)  # the code server that started the run
        try:
            return client is not None and client.ping("") is not None
        except Exception:  # unreachable, or still loading the code location
            return False


@contextlib.contextmanager
def _beating(instance: dg.DagsterInstance, run_id: str, interval: float) -> Iterator[None]:
    stop = threading.Event()
    key = heartbeat_key(run_id)

    def beat() -> None:
        while True:
            with contextlib.suppress(Exception):  # a storage hiccup skips one beat; the timeout spans several
                instance.run_storage.set_cursor_values({key: repr(time.time())})
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="gnt-run-worker-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


class _HeartbeatingExecutor(dg.Executor):
    def __init__(self, inner: dg.Executor):
        self._inner = inner

    @property
    def retries(self):
        return self._inner.retries

    @property
    def step_dependency_config(self):
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan):
        launcher = plan_context.instance.run_launcher
        if not isinstance(launcher, HeartbeatRunLauncher):
            yield from self._inner.execute(plan_context, execution_plan)
            return
        with _beating(plan_context.instance, plan_context.run_id, launcher.heartbeat_interval_seconds):
            yield from self._inner.execute(plan_context, execution_plan)


class HeartbeatingExecutorDefinition(dg.ExecutorDefinition):
    """An executor definition whose run worker sends heartbeats (what every job of the code location uses)."""


def heartbeating(executor_def: dg.ExecutorDefinition) -> HeartbeatingExecutorDefinition:
    """``executor_def`` with the same name and configuration, whose run worker sends heartbeats."""
    inner = executor_def.executor_creation_fn
    return HeartbeatingExecutorDefinition(
        name=executor_def.name,
        config_schema=executor_def.config_schema,
        requirements=executor_def.get_requirements,
        executor_creation_fn=lambda init_context: _HeartbeatingExecutor(inner(init_context)),
        description=executor_def.description,
    )


IN_PROCESS_EXECUTOR = heartbeating(dg.in_process_executor)
DEFAULT_EXECUTOR = heartbeating(dg.multi_or_in_process_executor)
