"""The services of deploy/docker-compose.yml as local processes on loopback, for the deployment tests.

Each service's command and environment are read from the compose file and only moved to loopback: service
host names become 127.0.0.1, the ports a service listens on become free ports, the files the compose file
mounts become copies in a test folder. PostgreSQL is not started from its image: a test passes the settings of
its ``running_postgres`` as variables that override the compose file's.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

from gnt_assets_tests.dagster_dev import free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
LOCATION = "gnt_assets"
REPOSITORY = "__repository__"
_INTERPOLATION = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def interpolate(value: str, environ: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:-default}`` substitution."""
    return _INTERPOLATION.sub(lambda m: environ.get(m.group(1)) or (m.group(2) or ""), value)


@dataclass
class Loopback:
    """Where each compose service's ports and mounted files are on this machine."""

    folder: Path
    ports: dict[tuple[str, str], int] = field(default_factory=dict)  # (service, container port) -> loopback port
    mounts: dict[str, Path] = field(default_factory=dict)  # container path -> local path

    def address(self, service: str, port: str) -> str:
        return f"127.0.0.1:{self.ports[(service, port)]}"

    def rewrite(self, text: str, own: str | None = None, *, own_ports: bool = False) -> str:
        """``text`` moved to loopback: ``service:port`` and bare service names, 0.0.0.0, container paths, and
        (``own_ports``, for commands) the ports the service ``own`` listens on."""
        text = text.replace("0.0.0.0", "127.0.0.1")
        for (service, port), local in self.ports.items():
            text = re.sub(rf"(?<![\w.-]){re.escape(service)}:{port}(?!\d)", f"127.0.0.1:{local}", text)
            if own_ports and service == own:
                text = re.sub(rf"(?<![\w.:-]){port}(?![\w.-])", str(local), text)
                text = re.sub(rf"(?<![\w.-]):{port}(?!\d)", f"127.0.0.1:{local}", text)
        if not own_ports and text in {service for service, _ in self.ports}:
            return "127.0.0.1"  # a host name alone, in a variable
        if self.mounts:
            containers = "|".join(re.escape(c) for c in sorted(self.mounts, key=len, reverse=True))
            text = re.sub(rf"(?<![\w.-])({containers})(?=$|[/\s])", lambda m: str(self.mounts[m.group(1)]), text)
        return text


def mount_files(services: dict, loopback: Loopback, transform: Callable[[str, Path], str] | None = None) -> None:
    """Copies each bind-mounted file into the loopback folder (through ``transform(container_path, source)``
    when given) and records where it went; the container paths' parents map to the same folders."""
    for spec in services.values():
        for volume in spec.get("volumes", []):
            source, container = volume.split(":")[:2]
            if not source.startswith("."):
                continue  # a named volume: the stand-in keeps its own data
            local = loopback.folder / container.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            path = (DEPLOY / source).resolve()
            local.write_text(transform(container, path) if transform else path.read_text())
            loopback.mounts[container] = local
            loopback.mounts.setdefault(str(Path(container).parent), local.parent)


def workspace_on_loopback(loopback: Loopback, path: Path) -> str:
    """deploy/workspace.yaml with the code server's host and port moved to loopback."""
    workspace = yaml.safe_load(path.read_text())
    for entry in workspace["load_from"]:
        server = entry["grpc_server"]
        server["port"] = loopback.ports[(server["host"], str(server["port"]))]
        server["host"] = "127.0.0.1"
    return yaml.safe_dump(workspace)


def service_env(spec: dict, loopback: Loopback, overrides: dict[str, str]) -> dict[str, str]:
    declared = {name: loopback.rewrite(interpolate(str(value), os.environ)) for name, value in (spec.get("environment") or {}).items()}
    return {**os.environ, **declared, **overrides, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def service_command(name: str, spec: dict, loopback: Loopback) -> list[str]:
    return [loopback.rewrite(interpolate(str(part), os.environ), name, own_ports=True) for part in spec["command"]]


class Services:
    """Started processes, each in its own session so stopping one stops its children (run workers, nannies)."""

    def __init__(self, folder: Path):
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "w")
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.processes[name] = process
        return process

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                pytest.fail(f"{name} exited with {process.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, size: int = 4000) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-size:]

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


def wait_until(what: str, predicate: Callable[[], object], services: Services, timeout: float = 180, every: float = 1) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        services.check_alive()
        with contextlib.suppress(Exception):
            value = predicate()
            if value:
                return value
        time.sleep(every)
    logs = "\n".join(f"--- {name}\n{services.tail(name, 2000)}" for name in services.processes)
    pytest.fail(f"timed out waiting for {what}\n{logs}")


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    body = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60).json()
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


def code_server_serves(port: int) -> bool:
    from dagster._grpc.client import DagsterGrpcClient

    return bool(DagsterGrpcClient(port=port, host="127.0.0.1").list_repositories())


ASSET_NODES = "{ assetNodes { assetKey { path } } }"
REPOSITORY_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
INSTIGATORS = """
query ($repo: RepositorySelector!) {
  sensorsOrError(repositorySelector: $repo) { ... on Sensors { results { name sensorState { id status } } } }
  schedulesOrError(repositorySelector: $repo) { ... on Schedules { results { name scheduleState { id status } } } }
}"""
STOP_SENSOR = "mutation ($id: String) { stopSensor(id: $id) { __typename ... on PythonError { message } } }"
STOP_SCHEDULE = "mutation ($id: String) { stopRunningSchedule(id: $id) { __typename ... on PythonError { message } } }"
LAUNCH_RUN = """
mutation ($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
LAUNCH_BACKFILL = """
mutation ($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}"""


def stop_instigators(url: str) -> list[str]:
    """Stops every sensor and schedule, so a test's runs are only the ones it launches."""
    data = graphql(url, INSTIGATORS, {"repo": REPOSITORY_SELECTOR})
    stopped = []
    for sensor in data["sensorsOrError"]["results"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            assert graphql(url, STOP_SENSOR, {"id": sensor["sensorState"]["id"]})["stopSensor"]["__typename"] == "StopSensorMutationResult"
            stopped.append(sensor["name"])
    for schedule in data["schedulesOrError"]["results"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            result = graphql(url, STOP_SCHEDULE, {"id": schedule["scheduleState"]["id"]})["stopRunningSchedule"]
            assert result["__typename"] == "ScheduleStateResult", result
            stopped.append(schedule["name"])
    return stopped


def launch_run(url: str, job: str, tags: dict[str, str] | None = None, run_config: dict | None = None) -> str:
    params = {
        "selector": {**REPOSITORY_SELECTOR, "jobName": job},
        "runConfigData": run_config or {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
    }
    result = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def launch_backfill(url: str, params: dict) -> str:
    result = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


@contextlib.contextmanager
def running_dagster(services: Services, compose_services: dict, loopback: Loopback, env: dict[str, str], *,
                    instance_yaml: str | None = None, before_daemon: Callable[[str], None] | None = None) -> Iterator[str]:
    """The code server, webserver and daemon of the compose file; yields the webserver's URL once it serves
    the code location. ``instance_yaml`` replaces the mounted instance file (a test's shorter intervals);
    ``before_daemon(url)`` runs before the daemon starts (e.g. to stop the sensors)."""
    for name in ("code-server", "webserver", "daemon"):
        spec = compose_services[name]
        for port in [*spec.get("expose", []), *(p.split(":")[-1] for p in spec.get("ports", []))]:
            loopback.ports[(name, str(port))] = free_port()

    def mounted(container: str, path: Path) -> str:
        if path.name == "workspace.yaml":
            return workspace_on_loopback(loopback, path)
        return instance_yaml if instance_yaml is not None and container.endswith("/dagster.yaml") else path.read_text()

    mount_files(compose_services, loopback, mounted)

    def start(name: str) -> None:
        spec = compose_services[name]
        services.start(name, service_command(name, spec, loopback), service_env(spec, loopback, env))

    start("code-server")
    wait_until("the code server", lambda: code_server_serves(loopback.ports[("code-server", "4000")]), services)
    start("webserver")
    url = f"http://{loopback.address('webserver', '3000')}"
    wait_until("the webserver", lambda: graphql(url, ASSET_NODES)["assetNodes"], services)
    if before_daemon:
        before_daemon(url)
    start("daemon")
    yield url
