"""The six per-file steps. Each validates its output, records it, then deletes its input.

A step that already has a valid record returns it (marked ``resumed``), so a
rerun after a crash or a fix continues from the last verified step.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import geopandas as gpd
import pandas as pd

from gnt_assets.mapterhorn import archives, rasters
from gnt_assets.mapterhorn.catalog import CatalogError, SourceFile, check_url
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.download import Download


def _resumed(work: FileWork, step: str) -> dict | None:
    record = work.done(step)
    return {**record, "resumed": True} if record else None


def download_step(work: FileWork, entry: SourceFile, fetch: Callable[[str, Path], Download]) -> dict:
    url = check_url(entry)
    earlier = work.record("download")
    if earlier and earlier["url"] != url:
        # A key now naming another URL (list lines reordered or edited) must not reuse the old file's outputs.
        raise CatalogError(f"mapterhorn file {work.key}: was downloaded from {earlier['url']} but the file list now says {url}; "
                           f"delete {work.record_path('download').parent} to process the new URL under this key")
    if record := _resumed(work, "download"):
        return record
    if entry.volumes:
        return _download_volumes(work, entry, fetch)
    result = fetch(url, work.step_dir("download") / entry.filename)
    return work.write_record("download", [result.path], url=url, md5=result.md5, attempts=result.attempts, resumed_from=result.resumed_from, resumed=False)


def _download_volumes(work: FileWork, entry: SourceFile, fetch: Callable[..., Download]) -> dict:
    """A multi-volume 7z: each volume fetched and verified (resumable on its own), then joined into
    ``{name}.7z`` (7-Zip splits an archive at byte boundaries), which must open before the volumes go."""
    for volume in entry.volumes:
        check_url(SourceFile(entry.source, entry.key, volume, entry.line))
    folder = work.step_dir("download")
    parts = [fetch(volume, folder / "volumes" / PurePosixPath(urlsplit(volume).path).name, validate=False) for volume in entry.volumes]
    joined = folder / entry.filename
    temp = joined.with_name(".tmp-" + joined.name)
    digest = hashlib.md5()
    with open(temp, "wb") as out:
        for part in parts:
            with open(part.path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
    try:
        archives.check_opens(temp)
    except archives.ArchiveError as error:
        temp.unlink()
        raise archives.ArchiveError(f"mapterhorn file {work.key}: the {len(parts)} volumes joined do not open: {error}") from error
    os.replace(temp, joined)
    shutil.rmtree(folder / "volumes")
    return work.write_record("download", [joined], url=entry.url, volumes=list(entry.volumes), md5=digest.hexdigest(),
                             attempts=max(p.attempts for p in parts), resumed_from=sum(p.resumed_from for p in parts), resumed=False)


def unpack_step(work: FileWork, *, max_total_bytes: int, max_ratio: float) -> dict:
    if record := _resumed(work, "unpacked"):
        return record
    (downloaded,) = work.inputs("unpacked")
    target = work.step_dir("unpacked")
    if archives.is_archive(downloaded):
        try:
            found = archives.extract(downloaded, target, max_total_bytes=max_total_bytes, max_ratio=max_ratio)
        except archives.ArchiveError as error:
            raise archives.ArchiveError(f"mapterhorn file {work.key}: {error}") from error
        if not found:
            raise archives.ArchiveError(f"mapterhorn file {work.key}: {downloaded.name} holds no {'/'.join(archives.RASTER_SUFFIXES)} file")
        record = work.write_record("unpacked", found, archive=downloaded.name, resumed=False)
        downloaded.unlink()
        return record
    if not archives.is_raster_name(downloaded):
        raise archives.ArchiveError(f"mapterhorn file {work.key}: {downloaded.name} is neither an archive nor a raster ({'/'.join(archives.RASTER_SUFFIXES)})")
    target.mkdir(parents=True, exist_ok=True)
    moved = target / downloaded.name
    os.replace(downloaded, moved)
    return work.write_record("unpacked", [moved], archive=None, resumed=False)


def georeference_step(work: FileWork, crs: str | None, crs_mode: str = "override") -> dict:
    """Give every raster the source's CRS: with ``crs_mode`` override (upstream's ``gdal_edit -a_srs``)
    the configured CRS replaces any embedded one; with missing, only rasters without one get it."""
    if record := _resumed(work, "georeferenced"):
        return record
    outputs, assigned, overridden = [], [], []
    for raster in work.inputs("georeferenced"):
        embedded = rasters.embedded_crs(raster)
        if embedded is None or (crs_mode == "override" and crs is not None and not rasters.same_crs(embedded, crs)):
            target = work.step_dir("georeferenced") / f"{raster.stem}.tif"
            target.parent.mkdir(parents=True, exist_ok=True)
            outputs.append(rasters.assign_crs(raster, target, crs, what=f"mapterhorn file {work.key}"))
            assigned.append(raster)
            if embedded is not None:
                overridden.append(f"{raster.name}: {embedded}")
        else:
            outputs.append(raster)
    record = work.write_record("georeferenced", outputs, assigned_crs=crs if assigned else None, crs_mode=crs_mode,
                               overridden=overridden, resumed=False)
    for raster in assigned:
        if raster not in outputs:
            raster.unlink()
    return record


def cog_step(work: FileWork) -> dict:
    if record := _resumed(work, "cog"):
        return record
    inputs = work.inputs("cog")
    taken = work.claim_cog_names([f"{raster.stem}.tif" for raster in inputs])
    clashes = sorted(taken)
    if clashes:
        raise rasters.RasterError(f"mapterhorn file {work.key}: {', '.join(clashes)} already made by {', '.join(sorted({taken[c] for c in clashes}))}; rename one of them")
    work.files_dir.mkdir(parents=True, exist_ok=True)
    outputs = []
    for raster in inputs:
        try:
            outputs.append(rasters.write_cog(raster, work.files_dir / f"{raster.stem}.tif"))
        except rasters.RasterError as error:
            raise rasters.RasterError(f"mapterhorn file {work.key}: {error}") from error
    record = work.write_record("cog", outputs, names=[p.name for p in outputs], resumed=False)
    work.clean_work()
    return record


def bounds_step(work: FileWork) -> dict:
    if record := _resumed(work, "bounds"):
        return record
    found = []
    for cog in work.inputs("bounds"):
        try:
            found.append(rasters.raster_bounds(cog))
        except rasters.RasterError as error:
            raise rasters.RasterError(f"mapterhorn file {work.key}: {error}") from error
    path = work.bounds_path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(".tmp-" + path.name)
    temp.write_text("\n".join(sorted(b.csv_row() for b in found)) + "\n")
    os.replace(temp, path)
    # The union of the file's bounds (EPSG:3857) for its materialization, without reading the rows again.
    bbox = [min(b.left for b in found), min(b.bottom for b in found), max(b.right for b in found), max(b.top for b in found)]
    return work.write_record("bounds", [path], rows=len(found), bbox=bbox, resumed=False)


def polygon_step(work: FileWork) -> dict:
    if record := _resumed(work, "polygon"):
        return record
    frames = [rasters.coverage_polygon(cog) for cog in work.inputs("polygon")]
    coverage = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=frames[0].crs)
    if coverage.geometry.is_empty.all():
        raise rasters.RasterError(f"mapterhorn file {work.key}: no valid pixels, the coverage polygon is empty")
    path = work.polygon_path
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(".tmp-" + path.name)
    temp.unlink(missing_ok=True)
    coverage.to_file(temp, driver="GPKG", layer="coverage")
    back = gpd.read_file(temp)
    if len(back) != len(coverage) or back.geometry.is_empty.all() or not back.geometry.is_valid.all():
        raise rasters.RasterError(f"mapterhorn file {work.key}: the written GeoPackage does not read back as valid, non-empty polygons")
    os.replace(temp, path)
    return work.write_record("polygon", [path], polygons=len(coverage), area=float(coverage.area.sum()), resumed=False)

