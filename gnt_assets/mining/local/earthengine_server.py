"""An Earth Engine REST server on loopback, so the real ``earthengine-api`` client (``GoogleEarthEngine``) runs offline.

It answers what the pipeline calls, as the v1 REST API does: discovery (the
package's own document) and the algorithm list; ``operations.list`` paged by
``pageSize``/``pageToken`` with ``nextPageToken``; ``operations.get`` (404 for an
unknown operation); ``image:export`` (a new ``PENDING`` operation) and
``image:computePixels`` (a 7-band GeoTIFF of the requested grid, a ramp so that
placement is visible, answered after ``latency`` seconds, one thread per
connection). Operations carry ``metadata.state``, ``metadata.description``,
``metadata.createTime``, ``done`` and, once failed, ``error.message``.

Tests and benchmarks set states with :meth:`EarthEngineServer.add` and
:meth:`EarthEngineServer.set_state`, read what the client sent (``exports``,
``pixels``, ``authorization``) and count requests by kind (``counts``).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from gnt_assets.core.loopback import serving
from gnt_assets.mining.local.samples import geotiff_bytes

DONE_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")
DEFAULT_PAGE_SIZE = 100  # the REST API's own default when the client sends none


def _package_file(name: str) -> dict:
    """earthengine-api's own discovery document and algorithm list (shipped with its tests)."""
    import ee

    return json.loads((Path(ee.__file__).parent / "tests" / name).read_text())


@dataclass
class EarthEngineServer:
    """State of one server: its operations (in creation order) and what the client sent."""

    project: str = "test"
    latency: float = 0.0  # seconds before each computePixels answer
    operations: dict[str, dict] = field(default_factory=dict)
    exports: list[dict] = field(default_factory=list)  # image:export bodies
    pixels: list[dict] = field(default_factory=list)  # image:computePixels bodies
    refuse: set[str] = field(default_factory=set)  # export descriptions answered with HTTP 400
    authorization: list[str] = field(default_factory=list)  # the Authorization header of every request
    counts: Counter = field(default_factory=Counter)  # requests by kind
    tiff_per_size: bool = False  # benchmarks: one GeoTIFF per size (the first grid's georeferencing), made once
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""
    _tiffs: dict = field(default_factory=dict)

    def add(self, description: str, state: str = "PENDING", error: str = "") -> dict:
        """A new operation (an export task) in ``state`` (an operation state: PENDING, RUNNING, SUCCEEDED, ...)."""
        with self.lock:
            op_id = f"OP{len(self.operations):07d}"
            created = f"2026-01-01T{len(self.operations) // 3600 % 24:02d}:{len(self.operations) // 60 % 60:02d}:{len(self.operations) % 60:02d}Z"
            self.operations[op_id] = {
                "name": f"projects/{self.project}/operations/{op_id}", "done": False,
                "metadata": {"@type": "type.googleapis.com/google.earthengine.v1.OperationMetadata", "type": "EXPORT_IMAGE",
                             "description": description, "state": "PENDING", "createTime": created, "updateTime": created},
            }
        return self.set_state(op_id, state, error)

    def set_state(self, op_id: str, state: str, error: str = "") -> dict:
        op = self.operations[op_id]
        op["metadata"]["state"], op["done"] = state, state in DONE_STATES
        if error:
            op["error"] = {"code": 3, "message": error}
        return op

    def _tiff(self, grid: dict) -> bytes:
        """A ramp (plus the band number) on the requested grid, made once per grid (or size)."""
        t, size = grid["affineTransform"], grid["dimensions"]
        key = json.dumps(size if self.tiff_per_size else grid, sort_keys=True)
        with self.lock:
            if key not in self._tiffs:
                affine = Affine(t["scaleX"], t["shearX"], t["translateX"], t["shearY"], t["scaleY"], t["translateY"])
                geobox = GeoBox((size["height"], size["width"]), affine, "EPSG:4326")
                ramp = np.arange(geobox.shape.y * geobox.shape.x, dtype="float32").reshape(geobox.shape)
                self._tiffs[key] = geotiff_bytes(np.stack([ramp + band for band in range(7)]), geobox)
            return self._tiffs[key]


def _handler(state: EarthEngineServer):
    discovery, algorithms = _package_file("cloud_api_discovery_document.json"), _package_file("algorithms.json")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else headers and body, written apart, wait out a 40 ms delayed ACK on loopback

        def log_message(self, *args):
            pass

        def _reply(self, body: dict | bytes, status: int = 200, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, reason: str) -> None:
            self._reply({"error": {"code": status, "message": message, "status": reason}}, status)

        def _count(self, kind: str) -> None:
            with state.lock:
                state.counts[kind] += 1
                state.authorization.append(self.headers.get("Authorization", ""))

        def do_GET(self):
            parts = urlsplit(self.path)
            path, params = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
            if path.startswith("/$discovery"):
                return self._reply(discovery)
            if "/algorithms" in path:
                return self._reply(algorithms)
            if "/operations/" in path:
                self._count("operations.get")
                op = state.operations.get(path.rsplit("/operations/", 1)[1])
                if op is None:
                    return self._error(404, f"Operation {path.rsplit('/', 1)[1]} not found.", "NOT_FOUND")
                return self._reply(op)
            if path.endswith("/operations"):
                self._count("operations.list")
                start, size = int(params.get("pageToken") or 0), int(params.get("pageSize") or DEFAULT_PAGE_SIZE)
                with state.lock:
                    ops = list(state.operations.values())[start : start + size + 1]
                page: dict = {"operations": ops[:size]}
                if len(ops) > size:
                    page["nextPageToken"] = str(start + size)
                return self._reply(page)
            self._error(404, f"no such endpoint {path}", "NOT_FOUND")

        def do_POST(self):
            path = urlsplit(self.path).path
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            if "/algorithms" in path:
                return self._reply(algorithms)
            if path.endswith("image:export"):
                self._count("image:export")
                if body.get("description") in state.refuse:
                    return self._error(400, "Image.clip: Invalid GeoJSON geometry.", "INVALID_ARGUMENT")
                with state.lock:
                    state.exports.append(body)
                return self._reply(state.add(body.get("description", "")))
            if path.endswith("image:computePixels"):
                self._count("image:computePixels")
                with state.lock:
                    state.pixels.append(body)
                time.sleep(state.latency)
                return self._reply(state._tiff(body["grid"]), content_type="image/tiff")
            self._error(404, f"no such endpoint {path}", "NOT_FOUND")

    return Handler


@contextlib.contextmanager
def earthengine_server(**settings) -> Iterator[EarthEngineServer]:
    """Serve on 127.0.0.1 (free port) until exit; ``settings`` are ``EarthEngineServer`` fields."""
    state = EarthEngineServer(**settings)
    with serving(_handler(state), "earthengine-server") as url:
        state.url = url
        yield state
