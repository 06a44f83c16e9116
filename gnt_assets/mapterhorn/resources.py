"""Mapterhorn source downloads: one interface, HTTP(S) for real sources, a loopback server locally.

Both implementations run the same download code (Range resume with If-Range,
retries with backoff, size, MD5 and opens-as-archive-or-raster verification); the local one generates the
sample sources and their catalog under the work folder and serves them on
127.0.0.1 with a port that stays stable across runs (it is in the file lists).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from gnt_assets.mapterhorn.archives import check_opens
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
    file_workers: int = Field(default=2, description="Files of a run worked on at once (threads; each runs its file's whole chain).")
    file_retries: int = Field(default=1, description="Times a file's step is retried after a transient error, for that file alone.")

    @property
    def root(self) -> Path:
        return Path(self.work_dir).absolute()

    def catalog(self) -> Path:
        return Path(self.catalog_dir).absolute() if self.catalog_dir else self.root / "source-catalog"

    def fetch(self, url: str, dest: Path, *, validate: bool = True) -> Download:
        """Download and verify; ``validate=False`` for a piece that opens only with others (a 7z volume)."""
        return download(url, dest, retries=self.retries, backoff_s=self.backoff_seconds, timeout_s=self.timeout_seconds,
                        validate=check_opens if validate else None)
