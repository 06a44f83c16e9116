"""The real earthengine-api client against a loopback server speaking the Earth Engine REST API.

The server answers discovery (the package's own document), the algorithm list,
operations list/get and image:export, and records what the client sent.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import ee
import pytest
import shapely

from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.exports import export_spec
from gnt_assets.resources.mining import GoogleEarthEngine

TESTS = Path(ee.__file__).parent / "tests"


class _EarthEngine(BaseHTTPRequestHandler):
    operations: dict = {}
    exports: list = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

    def do_GET(self):
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
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
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


@pytest.fixture
def earthengine_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _EarthEngine)
    _EarthEngine.operations, _EarthEngine.exports = {}, []
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
    assert sent["fileExportOptions"] == {"fileFormat": "GEO_TIFF", "driveDestination": {"folder": "landsat_mining", "filenamePrefix": spec.description}}
    expression = json.dumps(sent["expression"])  # the grid travels inside the expression (a reprojection)
    assert "LANDSAT/COMPOSITES/C02/T1_L2_ANNUAL" in expression and "EPSG:4326" in expression
    assert repr(spec.crs_transform[2]) in expression and repr(spec.crs_transform[0]) in expression
    _EarthEngine.operations[task.task_id].update(
        done=True, error={"message": "Image.clip: too many pixels"}, metadata={**_EarthEngine.operations[task.task_id]["metadata"], "state": "FAILED"})
    status = client.status(task.task_id)
    assert status.state == "FAILED" and "too many pixels" in status.error
