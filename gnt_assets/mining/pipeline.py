"""The steps behind the mining assets that touch services and storage (no Dagster here).

    polygon file -> validated mines -> clusters -> exports (ledger) -> Drive/direct files -> zarr region
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

import geopandas as gpd
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes, is_local
from gnt_assets.core.zarr_regions import region_status
from gnt_assets.io_managers.geoparquet import write_table
from gnt_assets.mining.downloads import ExportFileError, assemble
from gnt_assets.mining.drive import is_copy_of
from gnt_assets.mining.exports import (
    ACTIVE,
    DONE,
    QUEUED,
    ExportError,
    ExportRecord,
    ExportSpec,
    LedgerSnapshot,
    attempt_of,
    base_of,
    export_specs,
    failed_for_good,
    files_of,
    in_flight,
    ledger_path,
    read_ledger,
    read_snapshot,
    reset_clusters,
    route_for,
    update_ledger,
    with_attempt,
    with_state,
)
from gnt_assets.mining.polygons import PolygonFileError, ValidatedPolygons, validate_polygons
from gnt_assets.mining.regions import VARIABLE, country_geobox, create_region, region_path, write_cluster


def read_polygon_file(path: UPath) -> gpd.GeoDataFrame:
    """A GeoParquet (``.parquet``) or any OGR vector file (GeoPackage, ...), local or remote."""
    local = is_local(path)
    try:
        if path.suffix == ".parquet":
            return gpd.read_parquet(path.path if local else path)
        if local:
            return gpd.read_file(path.path)
        with path.open("rb") as handle:
            return gpd.read_file(handle)
    except FileNotFoundError:
        raise
    except Exception as error:  # pyogrio/pyarrow raise several types for unreadable files
        raise PolygonFileError(f"{path}: not a readable GeoPackage/GeoParquet polygon file: {error}") from error


def load_polygons(path: UPath, rejects_path: UPath) -> ValidatedPolygons:
    """Read and validate the polygon file; rejected rows go to a GeoParquet beside the tables."""
    checked = validate_polygons(read_polygon_file(path), str(path))
    write_table(checked.rejects, rejects_path)
    return checked


def direct_path(root: UPath, country: str, year: str | int, description: str) -> UPath:
    return root / "mining" / "direct" / country / str(year) / f"{description}.tif"


def _revivable(task, drive) -> bool:
    """An earlier task found for a cluster without a ledger record: reused while in flight, or completed with its
    files still on Drive; a completed task whose files are gone (a lost ledger after the download) is not."""
    if task.state in ACTIVE:
        return True
    if task.state != DONE:
        return False
    return drive is None or bool(files_of(drive.list_files(task.description), task.description))


def _record_for(spec: ExportSpec, route: str, by_base: dict, drive) -> tuple[ExportRecord, bool]:
    """A new record: the newest earlier attempt of this export if it can be reused, else the attempt after it."""
    earlier = by_base.get(base_of(spec.description), [])
    if not earlier:
        return ExportRecord(spec=spec, route=route), False
    attempt, task = max(earlier, key=lambda pair: pair[0])
    if _revivable(task, drive):
        record = ExportRecord(spec=replace(spec, description=task.description), route=route, attempts=attempt)
        return with_state(record, task), True
    record = ExportRecord(spec=replace(spec, description=with_attempt(spec.description, attempt + 1)), route=route,
                          attempts=attempt + 1, first_attempt=attempt + 1)
    return record, False


def submit_exports(root: UPath, earthengine, clusters: gpd.GeoDataFrame, country: str, year: int, drive=None,
                   reset: list[str] | None = None) -> tuple[list[ExportRecord], dict, list[str]]:
    """One export per cluster (two across the antimeridian), reusing what the ledger knows and, for exports it
    does not know, tasks from one listing of Earth Engine's tasks; returns records, counts, errors.

    ``reset`` (cluster ids or their first 8 characters) first returns those clusters to "to export" (next attempt).
    Direct exports run on a pool of ``earthengine.direct_workers`` threads; the ledger is written as each finishes.
    """
    ledger = ledger_path(root, country, year)
    on_disk = read_ledger(ledger)
    stored = [replace(r) for r in on_disk]  # copies: records below are updated in place, the ledger gets the difference
    counts = {"submitted": 0, "reused": 0, "queued": 0, "direct": 0, "drive": 0, "reset": 0}
    if reset:
        stored, done = reset_clusters(stored, reset)
        for record in stored:
            if record.route == "direct" and record.spec.description in done:
                direct_path(root, country, year, record.spec.description).unlink(missing_ok=True)
        counts["reset"] = len(done)
    known = {base_of(r.spec.description): r for r in stored}
    records, errors = [], []
    free = earthengine.max_in_flight - in_flight(root)
    specs = [(cluster, spec) for cluster in clusters.itertuples() for spec in export_specs(cluster, year)]
    by_base: dict | None = None
    direct_jobs = []
    for cluster, spec in specs:
        try:  # a cluster Earth Engine cannot take is reported; the others go on
            route = route_for(spec, earthengine.direct_max_bytes)
            record = known.get(base_of(spec.description))
            if record is None and route == "drive":
                if by_base is None:  # one listing for the whole run, only if an export is new to the ledger
                    by_base = {}
                    for name, task in earthengine.task_index().items():
                        by_base.setdefault(base_of(name), []).append((attempt_of(name), task))
                record, revived = _record_for(spec, route, by_base, drive)
                counts["reused"] += revived
            elif record is None:
                record = ExportRecord(spec=spec, route=route)
            if route == "direct":
                if record.state != DONE or not direct_path(root, country, year, record.spec.description).exists():
                    direct_jobs.append(record)
            elif record.task_id:
                counts["reused"] += record.state in ACTIVE or record.state == DONE
            elif free > 0:
                record, counts["submitted"], free = with_state(record, earthengine.submit(record.spec)), counts["submitted"] + 1, free - 1
            else:  # the sensor submits it when a slot frees
                record.state, counts["queued"] = QUEUED, counts["queued"] + 1
        except ExportError as error:
            errors.append(f"cluster {cluster.cluster_id[:8]}: {error}")
            continue
        counts[route] += 1
        records.append(record)
    update_ledger(ledger, on_disk, records)  # every export known before the slow direct requests start
    errors += compute_direct(root, earthengine, direct_jobs, ledger)
    return records, counts, errors


RETRY_TEXT = ("429", "too many requests", "quota", "rate limit", "resource_exhausted")


def _compute_with_backoff(earthengine, spec: ExportSpec, attempts: int, base_delay: float) -> bytes:
    """computePixels, retried with exponential backoff (and jitter) while Earth Engine answers 429 or a quota error."""
    for attempt in range(attempts):
        try:
            return earthengine.compute_pixels(spec)
        except ExportError as error:
            text = str(error).lower()
            if attempt == attempts - 1 or not any(t in text for t in RETRY_TEXT):
                raise
            time.sleep(base_delay * 2**attempt * (1 + random.random()))
    raise AssertionError("unreachable")


def compute_direct(root: UPath, earthengine, jobs: list[ExportRecord], ledger: UPath) -> list[str]:
    """The direct exports on a bounded thread pool (``earthengine.direct_workers``, Earth Engine allows about 40
    concurrent requests); each GeoTIFF is written atomically and its record (updated in place) marked done in the
    ledger as it lands. Returns one error per failed cluster; the others are kept."""
    if not jobs:
        return []
    errors: list[str] = []
    lock = threading.Lock()
    snapshot = read_snapshot(ledger)  # each export then writes its record without reading the ledger again
    workers = max(1, int(getattr(earthengine, "direct_workers", 20)))
    attempts = int(getattr(earthengine, "direct_retries", 6))
    delay = float(getattr(earthengine, "direct_backoff_seconds", 1.0))

    def run(record: ExportRecord) -> None:
        spec = record.spec
        data = _compute_with_backoff(earthengine, spec, attempts, delay)
        atomic_write_bytes(direct_path(root, spec.country, spec.year, spec.description), data)
        with lock:
            record.state = DONE
            _update_record(ledger, snapshot, record)

    with ThreadPoolExecutor(max_workers=min(workers, len(jobs)), thread_name_prefix="computePixels") as pool:
        futures = {pool.submit(run, record): record for record in jobs}
        for future in as_completed(futures):
            error = future.exception()
            if error is not None:
                if not isinstance(error, ExportError):
                    raise error
                errors.append(f"cluster {futures[future].spec.cluster_id[:8]}: {error}")
                with lock:
                    record = futures[future]
                    record.state, record.errors = "FAILED", [*record.errors, str(error)]
                    _update_record(ledger, snapshot, record)
    return errors


def _update_record(ledger: UPath, snapshot: LedgerSnapshot, record: ExportRecord) -> None:
    """``record`` written into the ledger over its version there (a run's change wins); ``snapshot`` is the
    ledger as this run last wrote it, so nothing is read again unless another writer wrote since."""
    after = [r for r in snapshot.records if r.spec.description != record.spec.description]
    update_ledger(ledger, snapshot.records, [*after, replace(record)], snapshot=snapshot)


def _export_files(root: UPath, drive, record: ExportRecord, staging: Path) -> tuple[dict[str, bytes], list]:
    spec = record.spec
    if record.route == "direct":
        path = direct_path(root, spec.country, spec.year, spec.description)
        return {path.name: path.read_bytes()}, []
    listed = files_of(drive.list_files(spec.description), spec.description)
    if not listed:
        raise ExportFileError(f"{spec.description}: no files on Drive (was the export completed and not yet downloaded?)")
    files = {}
    for file in listed:
        dest = staging / file.name
        if not is_copy_of(file, dest):  # staged copies are reused if size and MD5 are Drive's
            drive.download(file, dest)
        files[file.name] = dest.read_bytes()
    return files, listed


def staging_folder(root: UPath, country: str, year: str | int) -> Path:
    """Local folder for downloads in progress, one per storage root and partition."""
    store = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "gnt-mining-staging" / store / country / str(year)


def write_regions(root: UPath, drive, clusters: gpd.GeoDataFrame, country: str, year: int, skip_failed: bool = True,
                  max_attempts: int = 3) -> dict:
    """Download, verify and write every completed export into the country-year region; delete its Drive files
    (or the direct export's GeoTIFF, once the region marks the cluster's window complete) after.

    Exports that failed ``max_attempts`` times are skipped and named (``skip_failed``) instead of blocking the
    country-year; any other export not completed blocks it. The ledger is written as each cluster finishes, so a
    crash after a Drive deletion never leaves a written cluster marked as not downloaded.
    """
    ledger = ledger_path(root, country, year)
    records = read_ledger(ledger)
    failed = [r.spec.description for r in records if skip_failed and failed_for_good(r, max_attempts)]
    pending = [r.spec.description for r in records if r.state != DONE and r.spec.description not in failed]
    if not records or pending or len(failed) == len(records):
        raise ExportFileError(f"{country}|{year}: exports not completed yet: {pending or failed or 'no exports submitted'}")
    path = region_path(root, country, year)
    pieces = [spec.geobox.extent.boundingbox for cluster in clusters.itertuples() for spec in export_specs(cluster, year)]
    create_region(path, country_geobox([(b.left, b.bottom, b.right, b.top) for b in pieces]))
    staging = staging_folder(root, country, year)
    staging.mkdir(parents=True, exist_ok=True)
    errors, deleted, direct_deleted, written = [], 0, 0, []
    for record in records:
        if record.spec.description in failed:
            continue
        if record.downloaded:  # already in the region; its Drive files are gone
            written.append(record.spec.cluster_id)
            continue
        try:
            files, listed = _export_files(root, drive, record, staging)
            window = write_cluster(path, record.spec.geobox, assemble(record.spec, files))
        except OSError as error:  # a failed download keeps its .part for the next run to resume
            errors.append(f"cluster {record.spec.cluster_id[:8]}: {error}")
            continue
        except ExportFileError as error:  # a file that fails verification is downloaded again next time
            errors.append(f"cluster {record.spec.cluster_id[:8]}: {error}")
            for staged in [*staging.glob(f"{record.spec.description}.tif*"), *staging.glob(f"{record.spec.description}-*")]:
                staged.unlink()
            continue
        before = replace(record)
        record.downloaded = True  # the pixels are in the region: recorded before the Drive files go
        update_ledger(ledger, [before], [record])
        for file in listed:
            drive.delete(file.file_id)
            (staging / file.name).unlink(missing_ok=True)
            deleted += 1
        if record.route == "direct" and region_status(path, window, [VARIABLE]).marked:  # its region is complete:
            direct_path(root, country, year, record.spec.description).unlink(missing_ok=True)  # the GeoTIFF is not read again
            direct_deleted += 1
        written.append(record.spec.cluster_id)
    return {"path": path, "written": written, "errors": errors, "drive_deleted": deleted, "direct_deleted": direct_deleted,
            "skipped_failed": failed}
