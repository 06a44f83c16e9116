"""gnt-rasters against a real `dagster dev` on a free loopback port: register a raster (partition
added and run launched over GraphQL), follow its status, read the cache and catalog, launch cleanup."""

import json
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from upath import UPath

from gnt_assets.io_managers.geoparquet import read_table, write_table
from gnt_assets.rasters import catalog, grids
from gnt_assets.rasters.assets import GRIDS, STUDY_AREA
from gnt_assets.rasters.cli import main
from gnt_assets.rasters.local import sample_rasters
from gnt_assets_tests.dagster_dev import running_dagster_dev

pytestmark = pytest.mark.servers
REPO = Path(__file__).resolve().parents[2]
LOCATION = "gnt_assets_tests.rasters_tests.rasters_location"  # rasters only: fewer imports per launched run


@pytest.fixture
def webserver(tmp_path):
    with running_dagster_dev(tmp_path, location=("-m", LOCATION, "-d", str(REPO)), GNT_RASTER_TILE_SIZE="100") as url:
        yield urlparse(url).port, tmp_path / "data"


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
    assert stats["weights_entries"] >= 2 and stats["weights_bytes"] > 0  # coverage weights, counted apart
    maxima = read_table(root / "rasters" / "resampled" / "square_5km" / "my_counts.parquet")
    assert set(maxima.method) == {"sum", "max"}

    write_table(catalog.build_catalog(UPath(root) / "rasters"), UPath(root) / "rasters" / "catalog.parquet")
    assert main([*args, "list"]) == 0
    assert capsys.readouterr().out.startswith("my_counts\tready\tcount")

    # the seed's synchronous resample: waits for the run and writes the values as JSON
    output = tmp_path / "results.json"
    assert main([*args, "resample", "my_counts", "--methods", "sum", "--output", str(output), "--grid", "h3_5km"]) == 0
    assert _json(capsys)["status"] == "SUCCESS"
    written = json.loads(output.read_text())
    assert list(written["grids"]) == ["h3_5km"] and {row["method"] for row in written["grids"]["h3_5km"]} == {"sum"}
    assert len(written["grids"]["h3_5km"]) == len(read_table(root / "rasters" / "resampled" / "h3_5km" / "my_counts.parquet"))

    # the seed's queues: a missing result is waiting on "resampling"; process-tasks launches its run once
    (root / "rasters" / "resampled" / "square_5km" / "my_counts.parquet").unlink()
    assert main([*args, "process-tasks", "resampling", "--max-tasks", "5"]) == 0
    launched = _json(capsys)
    assert launched["waiting"] == 1 and [run["key"] for run in launched["launched"]] == ["my_counts"]
    assert main([*args, "queue-status"]) == 0
    queue = _json(capsys)
    assert queue["sources"]["ready"] == 1 and set(queue["jobs"]) >= {"raster_resample_job", "raster_registration_job"}
    assert _wait(args, launched["launched"][0]["run_id"], capsys) == "SUCCESS"
    assert (root / "rasters" / "resampled" / "square_5km" / "my_counts.parquet").exists()
    assert main([*args, "process-tasks", "resampling"]) == 0 and _json(capsys)["launched"] == []

    assert main([*args, "cache-cleanup", "--days-old", "0", "--min-access", "5"]) == 0
    assert _wait(args, _json(capsys)["run_id"], capsys) == "SUCCESS"
    assert main([*args, "cache-stats"]) == 0
    assert _json(capsys)["entries"] == 0
    assert main([*args, "register", str(tmp_path / "nothing.tif")]) == 2

    assert main([*args, "archive", "my_counts"]) == 0
    assert _wait(args, _json(capsys)["run_id"], capsys) == "SUCCESS"
    assert main([*args, "status", "--raster-id", "my_counts"]) == 0 and _json(capsys)["state"] == "archived"
    assert (root / "rasters" / "archive" / "my_counts" / "tiles" / "my_counts").exists()
