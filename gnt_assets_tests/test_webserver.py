"""Smoke test of what users do first: `dagster dev`, the asset list, one launch from the UI's GraphQL API."""

from __future__ import annotations

import time
from urllib.parse import urlparse

import pytest
import requests
from dagster_graphql import DagsterGraphQLClient

from gnt_assets_tests.dagster_dev import running_dagster_dev

pytestmark = pytest.mark.servers

ASSETS_QUERY = """
query {
  assetNodes { assetKey { path } groupName isPartitioned description }
}
"""


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory):
    """`dagster dev` with a fresh instance and storage root, as `make dev` runs it."""
    with running_dagster_dev(tmp_path_factory.mktemp("dev")) as url:
        yield url, urlparse(url).port


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
