"""Mapterhorn source downloads: one interface, HTTP(S) for real sources, a loopback server locally.

Both implementations run the same download code (Range resume, retries with
backoff, size and Content-MD5 verification); the local one generates the
sample sources and their catalog under the work folder and serves them on
127.0.0.1 with a port that stays stable across runs (it is in the file lists).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from gnt_assets.mapterhorn.download import Download, download


class MapterhornSourcesResource(dg.ConfigurableResource):
    """Where the source catalog and the per-file work live, and how files are fetched over HTTP(S)."""

    work_dir: str = Field(description="Local folder for the per-file chain (GDAL needs a file system).")
    catalog_dir: str | None = Field(default=None, description="source-catalog folder; default {work_dir}/source-catalog.")
    retries: int = 5
    backoff_seconds: float = 1.0
    timeout_seconds: float = 120.0
    max_unpacked_bytes: int = 50 * 2**30
    max_compression_ratio: float = 200.0

    @property
    def root(self) -> Path:
        return Path(self.work_dir).absolute()

    def catalog(self) -> Path:
        return Path(self.catalog_dir).absolute() if self.catalog_dir else self.root / "source-catalog"

    def fetch(self, url: str, dest: Path) -> Download:
        return download(url, dest, retries=self.retries, backoff_s=self.backoff_seconds, timeout_s=self.timeout_seconds)


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
        from gnt_assets.local.mapterhorn import SourceServer, generate_sources, write_catalog

        catalog = super().catalog()
        if not (catalog / ".generated").exists():
            files = generate_sources(self._www())
            with SourceServer(self._www(), self._port()) as server:  # binds the port the lists will name
                port = server.httpd.server_address[1]
            write_catalog(catalog, f"http://127.0.0.1:{port}", files)
            (self.root / "local-server" / "port").write_text(str(port))
            (catalog / ".generated").write_text("ok")
        return catalog

    def fetch(self, url: str, dest: Path) -> Download:
        from gnt_assets.local.mapterhorn import SourceServer

        if self._server is None:
            self.catalog()
            self._server = SourceServer(self._www(), self._port()).__enter__()
        return super().fetch(url, dest)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._server is not None:
            self._server.__exit__(None, None, None)
            self._server = None


def resource_set(profile: str) -> dict[str, Any]:
    if profile == "local":
        work = os.path.join(os.environ.get("GNT_STORAGE_ROOT", "./data"), "mapterhorn")
        return {"mapterhorn_sources": LocalMapterhornSourcesResource(work_dir=work)}
    return {
        "mapterhorn_sources": MapterhornSourcesResource(
            work_dir=os.environ.get("GNT_MAPTERHORN_WORK_DIR", "/tmp/gnt-mapterhorn"),
            catalog_dir=dg.EnvVar("GNT_MAPTERHORN_CATALOG"),
        )
    }
