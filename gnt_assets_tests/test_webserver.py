"""Smoke test of what users do first: `dagster dev`, the asset list, one launch from the UI's GraphQL API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

pytestmark = pytest.mark.servers

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ASSETS_QUERY = """
query {
  assetNodes { assetKey { path } groupName isPartitioned description }
}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` on a free loopback port with a fresh instance and storage root (as `make dev`)."""
    folder = tmp_path_factory.mktemp("dev")
    home = folder / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home), "GNT_STORAGE_ROOT": str(folder / "data"), "GNT_PROFILE": "local"}
    process = subprocess.Popen(
        [BIN / "dagster", "dev", "-w", REPO / "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=REPO, env=env, stdout=open(folder / "dev.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/server_info", timeout=2).ok and _assets(url):
                    break
            except (requests.ConnectionError, requests.Timeout, KeyError):
                pass
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited: {(folder / 'dev.log').read_text()[-3000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"dagster dev did not serve the code location: {(folder / 'dev.log').read_text()[-3000:]}")
        yield url, port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _assets(url: str) -> list[dict]:
    response = requests.post(f"{url}/graphql", json={"query": ASSETS_QUERY}, timeout=10)
    return response.json()["data"]["assetNodes"]


def test_ui_lists_assets_and_launches_a_materialization(dagster_dev):
    url, port = dagster_dev
    assets = _assets(url)
    groups = {node["groupName"] for node in assets}
    assert "conus404" in groups or "mining" in groups
    assert all(node["description"] for node in assets)

    unpartitioned = [n for n in assets if not n["isPartitioned"]]
    preferred = [n for n in unpartitioned if n["assetKey"]["path"] == ["conus404_failure_report"]]
    target = (preferred or unpartitioned)[0]["assetKey"]["path"]

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution(
        "__ASSET_JOB", repository_location_name="gnt_assets", repository_name="__repository__", asset_selection=[target]
    )
    deadline = time.monotonic() + 180
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS", f"run {run_id} of {target} ended {status}"
