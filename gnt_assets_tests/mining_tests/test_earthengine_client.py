"""The real earthengine-api client against a loopback server speaking the Earth Engine REST API.

The server answers discovery (the package's own document), the algorithm list,
operations list/get and image:export, and records what the client sent.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import ee
import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.worldgrid import world_tile
from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.downloads import assemble
from gnt_assets.mining.exports import export_spec, ledger_path, read_ledger
from gnt_assets.mining.local.samples import geotiff_bytes
from gnt_assets.mining.pipeline import direct_path, submit_exports
from gnt_assets.mining.resources import GoogleEarthEngine

TESTS = Path(ee.__file__).parent / "tests"


class _EarthEngine(BaseHTTPRequestHandler):
    operations: dict = {}
    exports: list = []
    pixels: list = []
    refuse: set = set()  # export descriptions answered with HTTP 400
    authorization: list = []  # the Authorization header of every request

    def _reply(self, body: dict | bytes, status: int = 200, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.authorization.append(self.headers.get("Authorization", ""))
        if self.path.startswith("/$discovery"):
            return self._reply(json.loads((TESTS / "cloud_api_discovery_document.json").read_text()))
        if "/operations/" in self.path:
            return self._reply(self.operations[self.path.split("/operations/")[1].split("?")[0]])
        if self.path.split("?")[0].endswith("/operations"):
            return self._reply({"operations": list(self.operations.values())})
        if "/algorithms" in self.path:
            return self._reply(json.loads((TESTS / "algorithms.json").read_text()))
        self.send_error(404)

    def do_POST(self):
        self.authorization.append(self.headers.get("Authorization", ""))
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path.split("?")[0].endswith("image:computePixels"):
            self.pixels.append(body)
            return self._reply(_render(body["grid"]), content_type="image/tiff")
        if self.path.split("?")[0].endswith("image:export") and body.get("description") in self.refuse:
            return self._reply({"error": {"code": 400, "message": "Image.clip: Invalid GeoJSON geometry.", "status": "INVALID_ARGUMENT"}}, 400)
        if self.path.split("?")[0].endswith("image:export"):
            self.exports.append(body)
            op_id = f"OP{len(self.exports):04d}"
            description = body.get("description", "")
            self.operations[op_id] = {"name": f"projects/test/operations/{op_id}", "done": False,
                                      "metadata": {"description": description, "state": "PENDING", "createTime": f"2026-01-01T00:00:{len(self.exports):02d}Z"}}
            return self._reply(self.operations[op_id])
        if "/algorithms" in self.path:
            return self._reply(json.loads((TESTS / "algorithms.json").read_text()))
        self.send_error(404)


def _render(grid: dict) -> bytes:
    """What computePixels returns: a 7-band GeoTIFF on the requested grid (a ramp, so placement is visible)."""
    t, size = grid["affineTransform"], grid["dimensions"]
    geobox = GeoBox((size["height"], size["width"]), Affine(t["scaleX"], t["shearX"], t["translateX"], t["shearY"], t["scaleY"], t["translateY"]), "EPSG:4326")
    ramp = np.arange(geobox.shape.y * geobox.shape.x, dtype="float32").reshape(geobox.shape)
    return geotiff_bytes(np.stack([ramp + band for band in range(7)]), geobox)


@pytest.fixture
def earthengine_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EarthEngine)
    _EarthEngine.operations, _EarthEngine.exports, _EarthEngine.pixels, _EarthEngine.refuse = {}, [], [], set()
    _EarthEngine.authorization = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_export_submitted_once_on_the_world_grid_and_polled(earthengine_server):
    import geopandas as gpd

    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": ["ZAF"]}, geometry=[shapely.box(27.0, -26.2, 27.004, -26.196)], crs=4326)
    spec = export_spec(next(cluster_country(mines, "ZAF", 0.005).itertuples()), 2020)
    client = GoogleEarthEngine(project="test", access_token="token", api_url=earthengine_server)
    assert client.find_task(spec.description) is None
    task = client.submit(spec)
    assert client.find_task(spec.description).task_id == task.task_id  # a re-run finds it instead of resubmitting
    sent = _EarthEngine.exports[0]
    assert sent["description"] == spec.description
    assert sent["fileExportOptions"] == {"fileFormat": "GEO_TIFF", "driveDestination": {"folder": "landsat_mining", "filenamePrefix": spec.description},
                                         "geoTiffOptions": {"noData": {"floatValue": -9999.0}}}  # the file states its nodata
    expression = json.dumps(sent["expression"])  # the grid travels inside the expression (a reprojection)
    assert "LANDSAT/COMPOSITES/C02/T1_L2_ANNUAL" in expression and "EPSG:4326" in expression
    assert '"Image.unmask"' in expression and "-9999" in expression  # masked pixels are not left to Earth Engine's 0
    assert repr(spec.crs_transform[2]) in expression and repr(spec.crs_transform[0]) in expression
    _EarthEngine.operations[task.task_id].update(
        done=True, error={"message": "Image.clip: too many pixels"}, metadata={**_EarthEngine.operations[task.task_id]["metadata"], "state": "FAILED"})
    status = client.status(task.task_id)
    assert status.state == "FAILED" and "too many pixels" in status.error


def _inside(ix: int, iy: int, tiles: int) -> shapely.Polygon:
    """A mine covering the middle of a ``tiles`` x ``tiles`` block of world tiles starting at (ix, iy)."""
    left, bottom, right, top = world_tile(ix, iy + tiles - 1).extent.boundingbox
    right = world_tile(ix + tiles - 1, iy).extent.boundingbox.right
    top = world_tile(ix, iy).extent.boundingbox.top
    margin = 0.002
    return shapely.box(left + margin, bottom + margin, right - margin, top - margin)


def test_refused_export_names_its_cluster_others_go_on_and_small_regions_use_compute_pixels(earthengine_server, tmp_path):
    # one mine inside one tile (direct), two spanning 3 x 3 tiles (Drive); Earth Engine refuses one of those
    geometries = [_inside(20560, 6300, 1), _inside(20600, 6300, 3), _inside(20700, 6300, 3)]
    mines = gpd.GeoDataFrame({"mine_id": [0, 1, 2], "ISO3_CODE": "ZAF"}, geometry=geometries, crs=4326)
    clusters = cluster_country(mines, "ZAF", 0.001)
    by_mine = {int(row.mine_ids[0]): row for row in clusters.itertuples()}
    refused = export_spec(by_mine[1], 2020).description
    _EarthEngine.refuse = {refused}
    client = GoogleEarthEngine(project="test", access_token="token", api_url=earthengine_server, direct_max_bytes=200_000)
    root = UPath(tmp_path)

    records, counts, errors = submit_exports(root, client, clusters, "ZAF", 2020)
    assert len(errors) == 1 and errors[0].startswith(f"cluster {by_mine[1].cluster_id[:8]}: {refused}: Earth Engine refused")
    assert "Invalid GeoJSON geometry" in errors[0]
    assert counts == {"submitted": 1, "reused": 0, "queued": 0, "direct": 1, "drive": 1, "reset": 0}
    direct = next(r for r in records if r.route == "direct")
    assert direct.spec.cluster_id == by_mine[0].cluster_id and direct.state == "COMPLETED"
    assert '"Image.unmask"' in json.dumps(_EarthEngine.pixels[0]["expression"])
    grid = _EarthEngine.pixels[0]["grid"]
    assert grid["crsCode"] == "EPSG:4326" and grid["dimensions"] == {"width": 64, "height": 64}
    assert grid["affineTransform"]["translateX"] == direct.spec.crs_transform[2]
    written = direct_path(root, "ZAF", 2020, direct.spec.description).read_bytes()
    assert assemble(direct.spec, {"direct.tif": written})[3, 0, :3].tolist() == [3.0, 4.0, 5.0]  # on the grid, as sent

    _EarthEngine.refuse = set()  # the re-run submits only what is missing
    records, counts, errors = submit_exports(root, client, clusters, "ZAF", 2020)
    assert not errors and counts == {"submitted": 1, "reused": 1, "queued": 0, "direct": 1, "drive": 2, "reset": 0}
    assert len(_EarthEngine.exports) == 2 and len(_EarthEngine.pixels) == 1  # nothing twice
    assert {r.spec.cluster_id for r in read_ledger(ledger_path(root, "ZAF", 2020))} == set(clusters["cluster_id"])


def test_queued_export_refused_by_earth_engine_is_a_failed_attempt_with_its_text(earthengine_server, tmp_path):
    from gnt_assets.mining.sensors import poll_ledger

    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": "ZAF"}, geometry=[_inside(20600, 6300, 3)], crs=4326)
    clusters = cluster_country(mines, "ZAF", 0.001)
    client = GoogleEarthEngine(project="test", access_token="token", api_url=earthengine_server, direct_max_bytes=0, max_in_flight=0)
    records, counts, _ = submit_exports(UPath(tmp_path), client, clusters, "ZAF", 2020)
    assert counts["queued"] == 1 and not _EarthEngine.exports  # no slot: nothing sent
    _EarthEngine.refuse = {records[0].spec.description}
    records, _, free = poll_ledger(records, client, free=1)
    assert records[0].state == "FAILED" and records[0].attempts == 1 and "Invalid GeoJSON geometry" in records[0].errors[-1]
    _EarthEngine.refuse = set()
    records, notes, free = poll_ledger(records, client, free=free)
    assert records[0].state == "READY"
    assert records[0].attempts == 2 and "resubmitting" in notes[0] and len(_EarthEngine.exports) == 1


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
    errors = compute_direct(UPath(tmp_path), pool, records, records, ledger)
    assert pool.most == 3  # bounded by direct_workers, and really concurrent (the barrier)
    assert pool.calls[busy] == 3 and pool.calls[throttled] == 2 and pool.calls[refused] == 1  # 429/quota retried, others not
    assert len(errors) == 1 and "Invalid geometry" in errors[0]
    assert [r.state for r in read_ledger(ledger)] == ["FAILED" if r.spec.description == refused else "COMPLETED" for r in records]
    assert all(direct_path(UPath(tmp_path), "ZAF", 2020, s.description).exists() for s in specs if s.description != refused)


def test_refresh_token_login_reaches_earth_engine_with_the_token_endpoint_answer(earthengine_server, tmp_path):
    """The seed's OAuth login for Earth Engine: the access token comes from the token endpoint (here the loopback one)."""
    from gnt_assets.mining.local.drive_server import drive_server

    with drive_server(tmp_path) as tokens:
        client = GoogleEarthEngine(project="test", api_url=earthengine_server, client_id=tokens.client_id,
                                   client_secret=tokens.client_secret, refresh_token=tokens.refresh_token, token_uri=tokens.token_uri)
        assert client.task_index() == {}
    assert tokens.tokens_issued == ["ya29.local-1"]
    listing = [a for a in _EarthEngine.authorization if a]
    assert listing and set(listing) == {"Bearer ya29.local-1"}
