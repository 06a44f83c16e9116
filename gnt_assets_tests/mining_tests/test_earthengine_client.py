"""The real earthengine-api client against the loopback server speaking the Earth Engine REST API
(``gnt_assets.mining.local.earthengine_server``), which records what the client sent."""

import json
import threading

import geopandas as gpd
import numpy as np
import pytest
import shapely
from upath import UPath

from gnt_assets.core.worldgrid import world_tile
from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.downloads import assemble
from gnt_assets.mining.exports import ExportError, export_spec, ledger_path, read_ledger
from gnt_assets.mining.local.earthengine_server import earthengine_server
from gnt_assets.mining.local.samples import geotiff_bytes
from gnt_assets.mining.pipeline import direct_path, submit_exports
from gnt_assets.mining.resources import GoogleEarthEngine


@pytest.fixture
def server():
    with earthengine_server() as state:
        yield state


def test_export_submitted_once_on_the_world_grid_and_polled(server):
    import geopandas as gpd

    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": ["ZAF"]}, geometry=[shapely.box(27.0, -26.2, 27.004, -26.196)], crs=4326)
    spec = export_spec(next(cluster_country(mines, "ZAF", 0.005).itertuples()), 2020)
    client = GoogleEarthEngine(project="test", access_token="token", api_url=server.url)
    assert client.find_task(spec.description) is None
    task = client.submit(spec)
    assert client.find_task(spec.description).task_id == task.task_id  # a re-run finds it instead of resubmitting
    sent = server.exports[0]
    assert sent["description"] == spec.description
    assert sent["fileExportOptions"] == {"fileFormat": "GEO_TIFF", "driveDestination": {"folder": "landsat_mining", "filenamePrefix": spec.description},
                                         "geoTiffOptions": {"noData": {"floatValue": -9999.0}}}  # the file states its nodata
    expression = json.dumps(sent["expression"])  # the grid travels inside the expression (a reprojection)
    assert "LANDSAT/COMPOSITES/C02/T1_L2_ANNUAL" in expression and "EPSG:4326" in expression
    assert '"Image.unmask"' in expression and "-9999" in expression  # masked pixels are not left to Earth Engine's 0
    assert repr(spec.crs_transform[2]) in expression and repr(spec.crs_transform[0]) in expression
    server.set_state(task.task_id, "FAILED", "Image.clip: too many pixels")
    status = client.status(task.task_id)
    assert status.state == "FAILED" and "too many pixels" in status.error
    with pytest.raises(ExportError, match="no task OP9999999"):  # a task Earth Engine does not know
        client.status("OP9999999")


def test_sensor_tick_takes_every_state_and_look_up_from_one_paged_listing(server, storage_root, instance, monkeypatch):
    """Five drive exports in every situation among 1,200 other tasks: the tick pages through ``operations.list``
    once (500 a page, as earthengine-api asks) and sends no per-task status request; a ledger none of whose
    tasks changed is not read the next tick."""
    from gnt_assets.mining.exports import ExportRecord, write_ledger
    from gnt_assets.resources.alerts import AlertSinksResource
    from gnt_assets.resources.storage import StorageResource
    from gnt_assets_tests.mining_tests.mining_fixtures import sensor_tick

    mines = gpd.GeoDataFrame({"mine_id": range(5), "ISO3_CODE": "ZAF"}, geometry=[_inside(20600 + 10 * i, 6300, 3) for i in range(5)], crs=4326)
    specs = [export_spec(c, 2020) for c in cluster_country(mines, "ZAF", 0.001).itertuples()]
    for i in range(1200):
        server.add(f"OTHER_{i}", "SUCCEEDED")
    running, done, failed, lost = (server.add(s.description, state)["name"].rsplit("/", 1)[1] for s, state in
                                   zip(specs, ["RUNNING", "SUCCEEDED", "FAILED", "RUNNING"], strict=False))
    server.set_state(failed, "FAILED", "Earth Engine memory capacity exceeded.")
    records = [ExportRecord(spec=specs[0], route="drive", task_id=running, state="RUNNING"),
               ExportRecord(spec=specs[1], route="drive", task_id=done, state="RUNNING"),
               ExportRecord(spec=specs[2], route="drive", task_id=failed, state="RUNNING"),
               ExportRecord(spec=specs[3], route="drive", state="QUEUED"),  # submitted before its record was written
               ExportRecord(spec=specs[4], route="drive", state="QUEUED")]
    write_ledger(ledger_path(storage_root, "ZAF", 2020), records)
    resources = {"storage": StorageResource(root=str(storage_root)), "alerts": AlertSinksResource(),
                 "earthengine": GoogleEarthEngine(project="test", access_token="token", api_url=server.url)}
    server.counts.clear()
    sensor_tick(instance, resources)
    assert dict(server.counts) == {"operations.list": 3, "image:export": 2}  # 1,204 operations, 500 a page
    after = read_ledger(ledger_path(storage_root, "ZAF", 2020))
    assert [r.state for r in after] == ["RUNNING", "COMPLETED", "READY", "RUNNING", "READY"]
    assert after[2].spec.description.endswith("_a2") and "memory capacity exceeded" in after[2].errors[0]
    assert after[3].task_id == lost and {e["description"] for e in server.exports} == {after[2].spec.description, specs[4].description}

    from gnt_assets.mining import sensors

    reads = []
    read = sensors.read_snapshot
    monkeypatch.setattr(sensors, "read_snapshot", lambda path: reads.append(path.stem) or read(path))
    server.counts.clear()
    sensor_tick(instance, resources)  # no task changed state: the ledger is not read, nothing is written
    assert dict(server.counts) == {"operations.list": 3} and reads == [] and read_ledger(ledger_path(storage_root, "ZAF", 2020)) == after
    server.set_state(running, "SUCCEEDED")
    sensor_tick(instance, resources)
    assert reads == ["2020"] and read_ledger(ledger_path(storage_root, "ZAF", 2020))[0].state == "COMPLETED"


def _inside(ix: int, iy: int, tiles: int) -> shapely.Polygon:
    """A mine covering the middle of a ``tiles`` x ``tiles`` block of world tiles starting at (ix, iy)."""
    left, bottom, right, top = world_tile(ix, iy + tiles - 1).extent.boundingbox
    right = world_tile(ix + tiles - 1, iy).extent.boundingbox.right
    top = world_tile(ix, iy).extent.boundingbox.top
    margin = 0.002
    return shapely.box(left + margin, bottom + margin, right - margin, top - margin)


def test_refused_export_names_its_cluster_others_go_on_and_small_regions_use_compute_pixels(server, tmp_path):
    # one mine inside one tile (direct), two spanning 3 x 3 tiles (Drive); Earth Engine refuses one of those
    geometries = [_inside(20560, 6300, 1), _inside(20600, 6300, 3), _inside(20700, 6300, 3)]
    mines = gpd.GeoDataFrame({"mine_id": [0, 1, 2], "ISO3_CODE": "ZAF"}, geometry=geometries, crs=4326)
    clusters = cluster_country(mines, "ZAF", 0.001)
    by_mine = {int(row.mine_ids[0]): row for row in clusters.itertuples()}
    refused = export_spec(by_mine[1], 2020).description
    server.refuse = {refused}
    client = GoogleEarthEngine(project="test", access_token="token", api_url=server.url, direct_max_bytes=200_000)
    root = UPath(tmp_path)

    records, counts, errors = submit_exports(root, client, clusters, "ZAF", 2020)
    assert len(errors) == 1 and errors[0].startswith(f"cluster {by_mine[1].cluster_id[:8]}: {refused}: Earth Engine refused")
    assert "Invalid GeoJSON geometry" in errors[0]
    assert counts == {"submitted": 1, "reused": 0, "queued": 0, "direct": 1, "drive": 1, "reset": 0}
    direct = next(r for r in records if r.route == "direct")
    assert direct.spec.cluster_id == by_mine[0].cluster_id and direct.state == "COMPLETED"
    assert '"Image.unmask"' in json.dumps(server.pixels[0]["expression"])
    grid = server.pixels[0]["grid"]
    assert grid["crsCode"] == "EPSG:4326" and grid["dimensions"] == {"width": 64, "height": 64}
    assert grid["affineTransform"]["translateX"] == direct.spec.crs_transform[2]
    written = direct_path(root, "ZAF", 2020, direct.spec.description).read_bytes()
    assert assemble(direct.spec, {"direct.tif": written})[3, 0, :3].tolist() == [3.0, 4.0, 5.0]  # on the grid, as sent

    server.refuse = set()  # the re-run submits only what is missing
    records, counts, errors = submit_exports(root, client, clusters, "ZAF", 2020)
    assert not errors and counts == {"submitted": 1, "reused": 1, "queued": 0, "direct": 1, "drive": 2, "reset": 0}
    assert len(server.exports) == 2 and len(server.pixels) == 1  # nothing twice
    assert {r.spec.cluster_id for r in read_ledger(ledger_path(root, "ZAF", 2020))} == set(clusters["cluster_id"])


def test_queued_export_refused_by_earth_engine_is_a_failed_attempt_with_its_text(server, tmp_path):
    from gnt_assets.mining.sensors import poll_ledger

    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": "ZAF"}, geometry=[_inside(20600, 6300, 3)], crs=4326)
    clusters = cluster_country(mines, "ZAF", 0.001)
    client = GoogleEarthEngine(project="test", access_token="token", api_url=server.url, direct_max_bytes=0, max_in_flight=0)
    records, counts, _ = submit_exports(UPath(tmp_path), client, clusters, "ZAF", 2020)
    assert counts["queued"] == 1 and not server.exports  # no slot: nothing sent
    server.refuse = {records[0].spec.description}
    records, _, free = poll_ledger(records, client, free=1)
    assert records[0].state == "FAILED" and records[0].attempts == 1 and "Invalid GeoJSON geometry" in records[0].errors[-1]
    server.refuse = set()
    records, notes, free = poll_ledger(records, client, free=free)
    assert records[0].state == "READY"
    assert records[0].attempts == 2 and "resubmitting" in notes[0] and len(server.exports) == 1


def test_compute_pixels_run_on_a_bounded_pool_with_backoff_on_429_and_quota(tmp_path):
    from gnt_assets.mining.exports import ExportError, ExportRecord, export_specs
    from gnt_assets.mining.pipeline import compute_direct

    geometries = [_inside(20560 + 3 * i, 6300, 1) for i in range(8)]
    mines = gpd.GeoDataFrame({"mine_id": range(8), "ISO3_CODE": "ZAF"}, geometry=geometries, crs=4326)
    specs = [s for c in cluster_country(mines, "ZAF", 0.001).itertuples() for s in export_specs(c, 2020)]
    busy, throttled, refused = specs[1].description, specs[2].description, specs[3].description

    class Pool:
        direct_workers, direct_retries, direct_backoff_seconds = 3, 4, 0.001

        def __init__(self):
            self.lock, self.running, self.most, self.calls = threading.Lock(), 0, 0, {}
            self.together = threading.Barrier(3, timeout=60)  # three requests must be in flight at once

        def compute_pixels(self, spec):
            with self.lock:
                self.calls[spec.description] = self.calls.get(spec.description, 0) + 1
                self.running += 1
                self.most = max(self.most, self.running)
                first = sum(self.calls.values()) <= 3
            try:
                if first:
                    self.together.wait()
                if spec.description == busy and self.calls[busy] <= 2:
                    raise ExportError(f"{spec.description}: Earth Engine computePixels failed: Too Many Requests (429)")
                if spec.description == throttled and self.calls[throttled] == 1:
                    raise ExportError(f"{spec.description}: Earth Engine computePixels failed: Quota exceeded for quota metric")
                if spec.description == refused:
                    raise ExportError(f"{spec.description}: Earth Engine computePixels failed: Invalid geometry")
                return geotiff_bytes(np.ones((7, spec.height, spec.width), "float32"), spec.geobox, None)
            finally:
                with self.lock:
                    self.running -= 1

    pool = Pool()
    records = [ExportRecord(spec=s, route="direct", state="QUEUED") for s in specs]
    ledger = UPath(tmp_path) / "ledger.json"
    errors = compute_direct(UPath(tmp_path), pool, records, ledger)
    assert pool.most == 3  # bounded by direct_workers, and really concurrent (the barrier)
    assert pool.calls[busy] == 3 and pool.calls[throttled] == 2 and pool.calls[refused] == 1  # 429/quota retried, others not
    assert len(errors) == 1 and "Invalid geometry" in errors[0]
    assert {r.spec.description: r.state for r in read_ledger(ledger)} == {r.spec.description: "FAILED" if r.spec.description == refused else "COMPLETED" for r in records}
    assert all(direct_path(UPath(tmp_path), "ZAF", 2020, s.description).exists() for s in specs if s.description != refused)


def test_refresh_token_login_reaches_earth_engine_with_the_token_endpoint_answer(server, tmp_path):
    """The seed's OAuth login for Earth Engine: the access token comes from the token endpoint (here the loopback one)."""
    from gnt_assets.mining.local.drive_server import drive_server

    with drive_server(tmp_path) as tokens:
        client = GoogleEarthEngine(project="test", api_url=server.url, client_id=tokens.client_id,
                                   client_secret=tokens.client_secret, refresh_token=tokens.refresh_token, token_uri=tokens.token_uri)
        assert client.task_index() == {}
    assert tokens.tokens_issued == ["ya29.local-1"]
    listing = [a for a in server.authorization if a]
    assert listing and set(listing) == {"Bearer ya29.local-1"}
