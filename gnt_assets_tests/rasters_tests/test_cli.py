"""gnt-rasters against a real `dagster dev` on a free loopback port: register a raster (partition
added and run launched over GraphQL), follow its status, read the cache and catalog, launch cleanup."""

import json
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
from upath import UPath

from gnt_assets.io_managers.geoparquet import read_table, write_table
from gnt_assets.local.rasters import sample_rasters
from gnt_assets.rasters import catalog, grids
from gnt_assets.rasters.assets import GRIDS, STUDY_AREA
from gnt_assets.rasters.cli import main

pytestmark = pytest.mark.servers
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
LOCATION = "gnt_assets_tests.rasters_tests.rasters_location"  # rasters only: fewer imports per launched run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def webserver(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    port = _free_port()
    root = tmp_path / "data"
    env = {**os.environ, "DAGSTER_HOME": str(home), "GNT_STORAGE_ROOT": str(root), "GNT_PROFILE": "local", "GNT_RASTER_TILE_SIZE": "100"}
    log = tmp_path / "dev.log"
    process = subprocess.Popen([BIN / "dagster", "dev", "-m", LOCATION, "-d", REPO, "-h", "127.0.0.1", "-p", str(port)],
                               cwd=REPO, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                body = requests.post(f"http://127.0.0.1:{port}/graphql", json={"query": "{ assetNodes { id } }"}, timeout=5).json()
                if body.get("data", {}).get("assetNodes"):
                    break
            except (requests.ConnectionError, requests.Timeout, ValueError):
                pass
            if process.poll() is not None:
                pytest.fail(f"dagster dev exited: {log.read_text()[-3000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"dagster dev did not start: {log.read_text()[-3000:]}")
        yield port, root
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _wait(args, run_id, capsys) -> str:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert main([*args, "status", run_id]) == 0
        state = _json(capsys)["status"]
        if state in ("SUCCESS", "FAILURE", "CANCELED"):
            return state
        time.sleep(2)
    return "TIMEOUT"


def test_cli_registers_and_runs_through_the_webserver(webserver, tmp_path, capsys):
    port, root = webserver
    args = ["--port", str(port), "--root", str(root), "--location", LOCATION]
    source = sample_rasters(UPath(tmp_path / "mine"), size=120)[2]  # species_count with its sidecar
    for spec in GRIDS:  # the grid assets (unpartitioned) are materialized once, as in the demo
        write_table(grids.grid_cells(spec, STUDY_AREA), UPath(root) / "rasters" / "grids" / f"{spec.name}.parquet")

    assert main([*args, "register", str(source), "--name", "my counts!"]) == 0
    registered = _json(capsys)
    assert registered["key"] == "my_counts"
    assert _wait(args, registered["run_id"], capsys) == "SUCCESS"
    assert (root / "rasters" / "resampled" / "h3_5km" / "my_counts.parquet").exists()

    assert main([*args, "resample", "my_counts", "--methods", "sum,max"]) == 0
    assert _wait(args, _json(capsys)["run_id"], capsys) == "SUCCESS"
    assert main([*args, "cache-stats"]) == 0
    stats = _json(capsys)
    assert stats["entries"] == 4 and stats["hits"] == 2  # per grid: sum answered from the store, max computed and stored
    maxima = read_table(root / "rasters" / "resampled" / "square_5km" / "my_counts.parquet")
    assert set(maxima.method) == {"sum", "max"}

    write_table(catalog.build_catalog(UPath(root) / "rasters"), UPath(root) / "rasters" / "catalog.parquet")
    assert main([*args, "list"]) == 0
    assert capsys.readouterr().out.startswith("my_counts\tready\tcount")

    assert main([*args, "cache-cleanup", "--days-old", "0", "--min-access", "5"]) == 0
    assert _wait(args, _json(capsys)["run_id"], capsys) == "SUCCESS"
    assert main([*args, "cache-stats"]) == 0
    assert _json(capsys)["entries"] == 0
    assert main([*args, "register", str(tmp_path / "nothing.tif")]) == 2
