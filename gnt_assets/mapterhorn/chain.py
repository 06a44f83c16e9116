"""The per-file chain on disk: where each step's output lives and how a step resumes.

Layout below the work folder (the seed's stores):

    work/{source}/{key}/download/        the downloaded file (``.part`` while incomplete)
    work/{source}/{key}/unpacked/        archive members, or the file itself
    work/{source}/{key}/georeferenced/   rasters that needed the configured CRS
    files/{source}/{name}.tif            the COGs (kept for the tarball)
    bounds/{source}/{key}.csv            the file's bounds rows
    polygons/{source}/{key}.gpkg         the file's coverage polygon (until the merge)
    state/{source}/{key}/{step}.json     a step's record, written once its output is verified
    state/{source}/{key}/failed.json     the step that failed last, its error and whether a retry may help

A step writes its record only after validating its output and before deleting
its input, so a rerun skips steps that have a record and whose output (or the
next step's record) still exists, and the peak disk use is one file's
intermediates.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.errors import InputError
from gnt_assets.mapterhorn.catalog import source_of

STEPS = ("download", "unpacked", "georeferenced", "cog", "bounds", "polygon")
# Which step's output each step reads; bounds and polygon both read the COGs.
INPUT_OF = {"unpacked": "download", "georeferenced": "unpacked", "cog": "georeferenced", "bounds": "cog", "polygon": "cog"}


class ChainError(InputError, RuntimeError):
    """A step whose input is missing (an upstream step must be re-materialized)."""


def cog_folder(root: Path, source: str) -> Path:
    return root / "files" / source


def folder_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


@dataclass(frozen=True)
class FileWork:
    root: Path
    key: str

    @property
    def source(self) -> str:
        return source_of(self.key)

    @property
    def work(self) -> Path:
        return self.root / "work" / self.source / self.key

    def step_dir(self, step: str) -> Path:
        return self.work / step

    @property
    def files_dir(self) -> Path:
        return cog_folder(self.root, self.source)

    @property
    def bounds_path(self) -> Path:
        return self.root / "bounds" / self.source / f"{self.key}.csv"

    @property
    def polygon_path(self) -> Path:
        return self.root / "polygons" / self.source / f"{self.key}.gpkg"

    def record_path(self, step: str) -> Path:
        return self.root / "state" / self.source / self.key / f"{step}.json"

    def record(self, step: str) -> dict | None:
        path = self.record_path(step)
        return json.loads(path.read_text()) if path.exists() else None

    def done(self, step: str) -> dict | None:
        """The step's record if its output is still there or a later step consumed it."""
        record = self.record(step)
        if record is None:
            return None
        if record.get("merged"):  # a polygon the source merge already folded into coverage.gpkg
            return record
        consumers = [later for later, source in INPUT_OF.items() if source == step]
        if any(self.record(s) for s in consumers) or all(Path(p).exists() for p in record["outputs"]):
            return record
        return None

    def claim_cog_names(self, names: list[str]) -> dict[str, str]:
        """Claim each COG name for this file in the source's name index (``state/{source}/_cog_names/``,
        one small file per name holding its owner's key, created exclusively). Returns the names
        another file already owns (name -> owner): O(names), not a read of every file's record."""
        index = self.root / "state" / self.source / "_cog_names"
        index.mkdir(parents=True, exist_ok=True)
        taken = {}
        for name in names:
            path, temp = index / name, index / f".{name}.{self.key}.tmp"
            temp.write_text(self.key)
            try:
                os.link(temp, path)  # exclusive and whole: the name appears with its owner or not at all
            except FileExistsError:
                if (owner := path.read_text()) != self.key:
                    taken[name] = owner
            finally:
                temp.unlink(missing_ok=True)
        return taken

    def write_record(self, step: str, outputs: list[Path], **facts) -> dict:
        """The step's record, written atomically; only the download's is also synced to disk (fsync). The download
        syncs its bytes; the later steps' outputs (GDAL's COGs, the bounds rows, the GeoPackage) are not synced, so
        syncing their records buys no durability (after a power loss the record could outlive the output it vouches
        for), and each sync waits on the file system's journal, beside the event log's commits in a run."""
        record = {
            "step": step,
            "key": self.key,
            "outputs": [str(p) for p in outputs],
            "bytes": sum(folder_bytes(p) for p in outputs),
            "work_bytes": folder_bytes(self.work),
            **facts,
        }
        atomic_write_text(UPath(self.record_path(step)), json.dumps(record, indent=1, sort_keys=True), durable=step == "download")
        return record

    def mark_merged(self, step: str) -> None:
        """Note that the source merge consumed (and deleted) this step's output."""
        record = {**self.record(step), "merged": True}
        atomic_write_text(UPath(self.record_path(step)), json.dumps(record, indent=1, sort_keys=True))

    def inputs(self, step: str) -> list[Path]:
        """The previous step's outputs, which this step consumes."""
        previous = INPUT_OF[step]
        record = self.record(previous)
        paths = [Path(p) for p in record["outputs"]] if record else []
        if record is None or not all(p.exists() for p in paths):
            raise ChainError(f"mapterhorn file {self.key}: step {step} needs the output of {previous}, which is missing; materialize {previous} first")
        return paths

    @property
    def failure_path(self) -> Path:
        return self.root / "state" / self.source / self.key / "failed.json"

    def failure(self) -> dict | None:
        return json.loads(self.failure_path.read_text()) if self.failure_path.exists() else None

    def record_failure(self, step: str, error: BaseException, *, transient: bool) -> dict:
        """Note that ``step`` failed: the source merge leaves this file out and the report names it."""
        record = {"key": self.key, "step": step, "error": f"{type(error).__name__}: {error}", "transient": transient}
        atomic_write_text(UPath(self.failure_path), json.dumps(record, indent=1, sort_keys=True))
        return record

    def clear_failure(self) -> None:
        self.failure_path.unlink(missing_ok=True)

    def verified(self) -> bool:
        """Every step done: the file's COGs, bounds rows and polygon (or its merged record) exist."""
        return all(self.record_path(step).exists() for step in ("cog", "bounds", "polygon"))

    def clean_work(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


@dataclass(frozen=True)
class SourceState:
    """Where a source's files stand for the merge: verified (every step done), failed (a step
    failed and no later success cleared it; key -> failure record), pending (the rest)."""

    verified: list[str]
    failed: dict[str, dict]
    pending: list[str]

    def fingerprint(self, root: Path) -> str | None:
        """A digest of the verified files' COG records and the failed files, or None while files are
        pending or none is verified. It changes only when a COG is remade or a file fails or recovers,
        so a merge that just marks polygons merged does not ask for another merge."""
        if self.pending or not self.verified:
            return None
        digest = hashlib.sha256()
        for key in self.verified:
            digest.update(key.encode() + FileWork(root, key).record_path("cog").read_bytes())
        for key in sorted(self.failed):
            digest.update(f"failed:{key}:{self.failed[key]['step']}".encode())
        return digest.hexdigest()[:16]


def source_state(root: Path, keys: list[str]) -> SourceState:
    verified, failed, pending = [], {}, []
    for key in sorted(keys):
        work = FileWork(root, key)
        if work.verified():
            verified.append(key)
        elif (failure := work.failure()) is not None:
            failed[key] = failure
        else:
            pending.append(key)
    return SourceState(verified, failed, pending)
