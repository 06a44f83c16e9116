"""Local Mapterhorn sources: generated catalogs and an HTTP server on 127.0.0.1.

Two sources are generated deterministically under ``{work}/local-server/www``:
``alpine_tiles`` (plain GeoTIFFs in EPSG:2056 with a nodata corner, and one
"GeoTIFF" that is an HTML error page: the demo's deliberately failing file) and
``lowland_grids`` (zips of an ASCII grid and an XYZ file, no CRS; its
metadata.json configures EPSG:25832). The server honours ``Range``, ``If-Range``
and HEAD and can inject faults per path (see ``Faults``), and
records the requests it saw so tests can show a resume.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import json
import socket
import threading
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import rasterio
from pydantic import Field, PrivateAttr
from rasterio.transform import from_origin

from gnt_assets.core.loopback import FileHandler
from gnt_assets.mapterhorn.download import Download
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource

NODATA = -9999.0
SOURCES = ("alpine_tiles", "lowland_grids")
BROKEN_FILE = "tile_2600_1202.tif"


def license_pdf(title: str) -> bytes:
    """A one-page PDF with correct cross-reference offsets."""
    text = f"BT /F1 12 Tf 72 720 Td ({title} - sample licence, CC BY 4.0) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(text) + text + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def terrain(seed: int, size: int) -> np.ndarray:
    """A smooth, deterministic elevation field in metres."""
    y, x = np.mgrid[0:size, 0:size] / size
    return (800 + 400 * np.sin(3 * x + seed) * np.cos(2 * y - seed) + 50 * seed).astype("float32")


def _geotiff(path: Path, seed: int, size: int, origin: tuple[float, float]) -> None:
    data = terrain(seed, size)
    data[: size // 4, : size // 4] = NODATA
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:2056",
                   transform=from_origin(*origin, 2.0, 2.0), nodata=NODATA)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(data, 1)


def ascii_grid(seed: int, size: int, origin: tuple[float, float], cell: float) -> bytes:
    data = terrain(seed, size)
    header = f"ncols {size}\nnrows {size}\nxllcorner {origin[0]}\nyllcorner {origin[1]}\ncellsize {cell}\nNODATA_value {NODATA:.0f}\n"
    return (header + "\n".join(" ".join(f"{v:.3f}" for v in row) for row in data) + "\n").encode()


def xyz_grid(seed: int, size: int, origin: tuple[float, float], cell: float, *, irregular: bool = False) -> bytes:
    data = terrain(seed, size)
    xs = origin[0] + cell / 2 + cell * np.arange(size)
    if irregular:
        xs[size // 2 :] += cell / 3
    ys = origin[1] + cell * size - cell / 2 - cell * np.arange(size)
    return "".join(f"{x:.2f} {y:.2f} {data[i, j]:.3f}\n" for i, y in enumerate(ys) for j, x in enumerate(xs)).encode()


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2000, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return buffer.getvalue()


def generate_sources(www: Path, size: int = 96) -> dict[str, list[str]]:
    """Write the served files once; returns each source's file names in list order."""
    files = {"alpine_tiles": ["tile_2600_1200.tif", "tile_2600_1201.tif", BROKEN_FILE], "lowland_grids": ["block_a.zip", "block_b.zip"]}
    marker = www / ".generated-2"
    if marker.exists():
        return files
    (www / "alpine_tiles").mkdir(parents=True, exist_ok=True)
    (www / "lowland_grids").mkdir(parents=True, exist_ok=True)
    # The deliberately failing file: the server answers 200 with an error page under the .tif name,
    # as misconfigured mirrors do. The download verifies (size, MD5) but the file does not open.
    (www / "alpine_tiles" / BROKEN_FILE).write_bytes(b"<html><body>503 Service Temporarily Unavailable</body></html>\n" * 40)
    for i, name in enumerate(files["alpine_tiles"][:2]):
        _geotiff(www / "alpine_tiles" / name, i, size, (2_600_000.0 + 2.0 * size * i, 1_200_000.0))
    for i, name in enumerate(files["lowland_grids"]):
        origin = (500_000.0 + 10.0 * size * i, 5_700_000.0)
        members = {f"{name[:-4]}_dgm.asc": ascii_grid(10 + i, size, origin, 10.0),
                   f"{name[:-4]}_dgm_xyz/{name[:-4]}_points.xyz": xyz_grid(20 + i, size // 2, (origin[0], origin[1] - 10.0 * size), 10.0)}
        (www / "lowland_grids" / name).write_bytes(_zip(members))
    marker.write_text("ok")
    return files


def write_catalog(catalog: Path, base_url: str, files: dict[str, list[str]]) -> None:
    """``source-catalog/{source}/`` with file_list.txt (pointing at ``base_url``), metadata.json, LICENSE.pdf."""
    described = {
        "alpine_tiles": {"name": "alpine_tiles", "resolution-m": 2.0, "website": "https://example.org/alpine", "license": "CC BY 4.0", "producer": "GNT sample generator"},
        "lowland_grids": {"name": "lowland_grids", "resolution-m": 10.0, "website": "https://example.org/lowland", "license": "CC BY 4.0", "producer": "GNT sample generator", "crs": "EPSG:25832"},
    }
    for source, names in files.items():
        folder = catalog / source
        folder.mkdir(parents=True, exist_ok=True)
        lines = [f"# {source}: generated sample source served on loopback"] + [f"{base_url}/{source}/{n}" for n in names]
        (folder / "file_list.txt").write_text("\n".join(lines) + "\n")
        (folder / "metadata.json").write_text(json.dumps(described[source], indent=2) + "\n")
        (folder / "LICENSE.pdf").write_bytes(license_pdf(source))


@dataclass
class Faults:
    """Faults to inject, consumed one per request: ``reset``, ``503``, ``wrong_length``, ``slow``
    (the body trickles out in 16 KiB pieces, so a test can kill the downloader mid-file),
    ``ignore_range`` (200 and the whole file whatever the Range), ``wrong_start`` (a 206 whose
    Content-Range starts 4 KiB away from the byte asked for), ``gzip`` (the body gzip-encoded
    although identity was asked for) and ``gzip_reset`` (that, cut off halfway), ``ignore_if_range`` (a range served whatever
    the validator). Every response
    carries an ETag (the MD5) and Last-Modified, and ``If-Range`` is honoured."""

    queued: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, *faults: str) -> None:
        with self.lock:
            self.queued[path].extend(faults)

    def take(self, path: str, range_header: str | None, headers: dict[str, str] | None = None) -> str | None:
        with self.lock:
            self.requests.append((path, range_header))
            self.headers.append(dict(headers or {}))
            return self.queued[path].pop(0) if self.queued.get(path) else None


def _handler(www: Path, faults: Faults) -> type[FileHandler]:
    class Handler(FileHandler):  # quiet: tests read faults.requests instead
        def _serve(self, *, head: bool) -> None:
            path = (www / self.path.lstrip("/")).resolve()
            fault = faults.take(self.path, "HEAD" if head else self.headers.get("Range"), dict(self.headers.items()))
            if fault == "503":
                self.send_error(503, "injected: service unavailable")
                return
            if not path.is_file() or www.resolve() not in path.parents:
                self.send_error(404)
                return
            data = path.read_bytes()
            etag = f'"{hashlib.md5(data).hexdigest()}"'
            start, end = 0, len(data) - 1
            range_header = self.headers.get("Range")
            if_range = self.headers.get("If-Range")
            ranged = bool(range_header and range_header.startswith("bytes=")) and not head and fault not in ("ignore_range", "gzip", "gzip_reset")
            if ranged and if_range is not None and if_range != etag and fault != "ignore_if_range":
                ranged = False  # RFC 9110: the validator does not match, so the whole (new) file
            if ranged:
                first, _, last = range_header[6:].partition("-")
                start, end = int(first), int(last) if last else len(data) - 1
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "wrong_start":
                    start = max(0, start - 4096) if start >= 4096 else start + 4096
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
                self.send_header("Content-MD5", base64.b64encode(hashlib.md5(data).digest()).decode())
            body = data[start : end + 1]
            if fault in ("gzip", "gzip_reset"):  # a server that encodes although identity was asked for
                body = gzip.compress(body, mtime=0)
                self.send_header("Content-Encoding", "gzip")
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", self.date_time_string(int(path.stat().st_mtime)))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body) + (7 if fault == "wrong_length" else 0)))
            self.end_headers()
            if head:
                return
            if fault in ("reset", "wrong_length", "gzip_reset"):
                self.wfile.write(body if fault == "wrong_length" else body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            if fault == "slow":
                with contextlib.suppress(ConnectionError):
                    for offset in range(0, len(body), 16 * 1024):
                        self.wfile.write(body[offset : offset + 16 * 1024])
                        self.wfile.flush()
                        time.sleep(0.02)
                return
            self.wfile.write(body)

    return Handler


class _SharedPortServer(ThreadingHTTPServer):
    # Step processes of one backfill each start a server on the saved port; SO_REUSEPORT lets
    # them share it (they serve the same generated files), and one stopping leaves the others up.
    allow_reuse_port = True
    daemon_threads = True


class SourceServer(contextlib.AbstractContextManager):
    """Serves ``www`` on 127.0.0.1 (``port=0``: a free port) in a background thread."""

    def __init__(self, www: Path, port: int = 0):
        self.www = www
        self.faults = Faults()
        self.httpd = _SharedPortServer(("127.0.0.1", port), _handler(www, self.faults))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> SourceServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


class LocalMapterhornSourcesResource(MapterhornSourcesResource):
    """Generated sources served on 127.0.0.1; the server starts on first download and stops with the run."""

    port: int = Field(default=0, description="Server port; 0 picks a free one once and keeps it in local-server/port.")
    backoff_seconds: float = 0.05
    _server: Any = PrivateAttr(default=None)

    def _www(self) -> Path:
        return self.root / "local-server" / "www"

    def _port(self) -> int:
        saved = self.root / "local-server" / "port"
        if self.port:
            return self.port
        return int(saved.read_text()) if saved.exists() else 0

    def catalog(self) -> Path:
        catalog = super().catalog()
        if not (catalog / ".generated-2").exists():
            files = generate_sources(self._www())
            with SourceServer(self._www(), self._port()) as server:  # binds the port the lists will name
                port = server.httpd.server_address[1]
            write_catalog(catalog, f"http://127.0.0.1:{port}", files)
            (self.root / "local-server" / "port").write_text(str(port))
            (catalog / ".generated-2").write_text("ok")
        return catalog

    def fetch(self, url: str, dest: Path, *, validate: bool = True) -> Download:
        if self._server is None:
            self.catalog()
            self._server = SourceServer(self._www(), self._port()).__enter__()
        return super().fetch(url, dest, validate=validate)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None
