"""The steps behind the mining assets that touch services and storage (no Dagster here).

    polygon file -> validated mines -> clusters -> exports (ledger) -> Drive/direct files -> zarr region
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import geopandas as gpd
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes, is_local
from gnt_assets.io_managers.geoparquet import write_table
from gnt_assets.mining.downloads import ExportFileError, assemble
from gnt_assets.mining.exports import (
    DONE,
    QUEUED,
    ExportError,
    ExportRecord,
    export_spec,
    in_flight,
    ledger_path,
    read_ledger,
    route_for,
    with_state,
    write_ledger,
)
from gnt_assets.mining.polygons import PolygonFileError, ValidatedPolygons, validate_polygons
from gnt_assets.mining.regions import country_geobox, create_region, region_path, write_cluster


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


def submit_exports(root: UPath, earthengine, clusters: gpd.GeoDataFrame, country: str, year: int) -> tuple[list[ExportRecord], dict, list[str]]:
    """One export per cluster, reusing tasks already known by description; returns records, counts, errors."""
    known = {r.spec.description: r for r in read_ledger(ledger_path(root, country, year))}
    records, errors = [], []
    counts = {"submitted": 0, "reused": 0, "queued": 0, "direct": 0, "drive": 0}
    free = earthengine.max_in_flight - in_flight(root)
    for cluster in clusters.itertuples():
        try:  # a cluster Earth Engine cannot take is reported; the others go on
            spec = export_spec(cluster, year)
            route = route_for(spec, earthengine.direct_max_bytes)
            record = known.get(spec.description) or ExportRecord(spec=spec, route=route)
            if route == "direct":
                target = direct_path(root, country, year, spec.description)
                if not target.exists():
                    atomic_write_bytes(target, earthengine.compute_pixels(spec))
                record.state = DONE
            elif record.task_id:
                counts["reused"] += 1
            elif (task := earthengine.find_task(spec.description)) is not None:
                record, counts["reused"] = with_state(record, task), counts["reused"] + 1
            elif free > 0:
                record, counts["submitted"], free = with_state(record, earthengine.submit(spec)), counts["submitted"] + 1, free - 1
            else:  # the sensor submits it when a slot frees
                record.state, counts["queued"] = QUEUED, counts["queued"] + 1
        except ExportError as error:
            errors.append(f"cluster {cluster.cluster_id[:8]}: {error}")
            continue
        counts[route] += 1
        records.append(record)
    write_ledger(ledger_path(root, country, year), records)
    return records, counts, errors


def _export_files(root: UPath, drive, record: ExportRecord, staging: Path) -> tuple[dict[str, bytes], list]:
    spec = record.spec
    if record.route == "direct":
        path = direct_path(root, spec.country, spec.year, spec.description)
        return {path.name: path.read_bytes()}, []
    listed = drive.list_files(spec.description)
    if not listed:
        raise ExportFileError(f"{spec.description}: no files on Drive (was the export completed and not yet downloaded?)")
    files = {}
    for file in listed:
        dest = staging / file.name
        if not (dest.exists() and (not file.size or dest.stat().st_size == file.size)):  # staged copies are reused
            drive.download(file, dest)
        files[file.name] = dest.read_bytes()
    return files, listed


def staging_folder(root: UPath, country: str, year: str | int) -> Path:
    """Local folder for downloads in progress, one per storage root and partition."""
    store = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / "gnt-mining-staging" / store / country / str(year)


def write_regions(root: UPath, drive, clusters: gpd.GeoDataFrame, country: str, year: int) -> dict:
    """Download, verify and write every completed export into the country-year region; delete Drive files after."""
    ledger = ledger_path(root, country, year)
    records = read_ledger(ledger)
    pending = [r.spec.description for r in records if r.state != DONE]
    if not records or pending:
        raise ExportFileError(f"{country}|{year}: exports not completed yet: {pending or 'no exports submitted'}")
    path = region_path(root, country, year)
    exportable = clusters[~clusters["crosses_antimeridian"]]
    create_region(path, country_geobox(list(zip(exportable.minx, exportable.miny, exportable.maxx, exportable.maxy, strict=True))))
    staging = staging_folder(root, country, year)
    staging.mkdir(parents=True, exist_ok=True)
    errors, deleted, written = [], 0, []
    for record in records:
        if record.downloaded:  # already in the region; its Drive files are gone
            written.append(record.spec.cluster_id)
            continue
        try:
            files, listed = _export_files(root, drive, record, staging)
            write_cluster(path, record.spec.geobox, assemble(record.spec, files))
        except OSError as error:  # a failed download keeps its .part for the next run to resume
            errors.append(f"cluster {record.spec.cluster_id[:8]}: {error}")
            continue
        except ExportFileError as error:  # a file that fails verification is downloaded again next time
            errors.append(f"cluster {record.spec.cluster_id[:8]}: {error}")
            for staged in staging.glob(f"{record.spec.description}*"):
                staged.unlink()
            continue
        for file in listed:  # only after the verified pixels are in the region
            drive.delete(file.file_id)
            (staging / file.name).unlink(missing_ok=True)
            deleted += 1
        record.downloaded = True
        written.append(record.spec.cluster_id)
    write_ledger(ledger, records)
    return {"path": path, "written": written, "errors": errors, "drive_deleted": deleted}
