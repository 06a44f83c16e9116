"""Per-source merge: bounds.csv, the unioned coverage.gpkg and the tarball's member list.

The merge takes the source's verified files (``chain.source_state``): a file that failed
is left out and named in the report, as upstream's scripts log a bad file and merge the
rest, unless the source's metadata.json sets ``require_all_files``.

Outputs are byte-stable across reruns (sorted rows, a fixed GeoPackage
timestamp), so re-running a source republishes an identical tarball. Per-file
GeoPackages are deleted only after the merged coverage is written and verified.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
import rasterio.features
import rasterio.transform
import shapely
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.errors import InputError
from gnt_assets.core.quicklook import QuickLook, quicklook
from gnt_assets.core.tarball import TarMember
from gnt_assets.mapterhorn.catalog import SourceMetadata
from gnt_assets.mapterhorn.chain import FileWork, SourceState, cog_folder
from gnt_assets.mapterhorn.rasters import BOUNDS_HEADER

# GDAL stamps gpkg_contents.last_change with "now" unless told otherwise.
GPKG_DATE = "2000-01-01T00:00:00Z"


class MergeError(InputError, RuntimeError):
    """A source that cannot be merged yet, or whose merged output failed verification."""


def merged_dir(root: Path, source: str) -> Path:
    return root / "merged" / source


def bounds_csv(root: Path, source: str, keys: list[str]) -> Path:
    """``bounds.csv`` from every file's rows, sorted by file name, each file once."""
    rows: dict[str, str] = {}
    for key in keys:
        path = FileWork(root, key).bounds_path
        if not path.exists():
            raise MergeError(f"source {source}: file {key} has no bounds yet; materialize its file_bounds")
        for row in path.read_text().splitlines():
            name = row.split(",", 1)[0]
            if name in rows and rows[name] != row:
                raise MergeError(f"source {source}: two files produce {name}; rename one in the file list")
            rows[name] = row
    path = merged_dir(root, source) / "bounds.csv"
    atomic_write_text(UPath(path), "\n".join([BOUNDS_HEADER, *(rows[name] for name in sorted(rows))]) + "\n")
    return path


def coverage_gpkg(root: Path, source: str, keys: list[str]) -> Path:
    """Union (make-valid) of the per-file polygons into ``coverage.gpkg``; reused while no COG changed."""
    folder = merged_dir(root, source)
    path, record_path = folder / "coverage.gpkg", folder / "coverage.json"
    fingerprint = SourceState(sorted(keys), {}, []).fingerprint(root)
    if path.exists() and record_path.exists() and json.loads(record_path.read_text()).get("fingerprint") == fingerprint:
        _polygons_merged(root, keys)
        return path
    missing = [k for k in keys if not FileWork(root, k).polygon_path.exists()]
    if missing:
        raise MergeError(f"source {source}: no coverage polygon for {', '.join(missing)}; materialize file_coverage")
    frames = [gpd.read_file(FileWork(root, k).polygon_path) for k in sorted(keys)]
    crs = frames[0].crs
    parts = pd.concat([f.to_crs(crs) for f in frames], ignore_index=True)
    union = shapely.make_valid(shapely.union_all(shapely.make_valid(parts.geometry.values)))
    merged = gpd.GeoDataFrame({"source": [source]}, geometry=[union], crs=crs)
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / ".tmp-coverage.gpkg"
    temp.unlink(missing_ok=True)
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": GPKG_DATE})
    merged.to_file(temp, driver="GPKG", layer="coverage")
    check = gpd.read_file(temp)
    if len(check) != 1 or not check.geometry.is_valid.all() or check.area.sum() + 1e-6 < parts.area.max():
        raise MergeError(f"source {source}: merged coverage failed verification")
    os.replace(temp, path)
    atomic_write_text(UPath(record_path), json.dumps({"keys": sorted(keys), "fingerprint": fingerprint, "area": float(union.area)}))
    _polygons_merged(root, keys)
    return path


def _polygons_merged(root: Path, keys: list[str]) -> None:
    """Delete the per-file polygons (the verified coverage.gpkg holds them) and say so in their records."""
    for key in keys:
        work = FileWork(root, key)
        work.polygon_path.unlink(missing_ok=True)
        work.mark_merged("polygon")


def coverage_preview(coverage: Path) -> QuickLook:
    """The merged coverage drawn at most 256 px wide (1 inside, transparent outside): the source's preview."""
    frame = gpd.read_file(coverage)
    left, bottom, right, top = frame.total_bounds
    scale = max(right - left, top - bottom) / 256 or 1.0
    width, height = max(1, math.ceil((right - left) / scale)), max(1, math.ceil((top - bottom) / scale))
    grid = rasterio.features.rasterize(((g, 1) for g in frame.geometry), out_shape=(height, width),
                                       transform=rasterio.transform.from_origin(left, top, scale, scale), fill=0, dtype="uint8")
    return quicklook(grid.astype("float32"), nodata=0, crs=str(frame.crs))


def tarball_members(root: Path, metadata: SourceMetadata, license_pdf: Path, cog_names: list[str]) -> tuple[TarMember, ...]:
    """The upstream layout: LICENSE.pdf, metadata.json, bounds.csv, coverage.gpkg, files/{name}.tif."""
    folder = merged_dir(root, metadata.source)
    meta_path = folder / "metadata.json"
    meta_path.write_bytes(metadata.json_bytes())
    files = cog_folder(root, metadata.source)
    named = [("LICENSE.pdf", license_pdf), ("metadata.json", meta_path), ("bounds.csv", folder / "bounds.csv"), ("coverage.gpkg", folder / "coverage.gpkg")]
    named += [(f"files/{name}", files / name) for name in sorted(cog_names)]
    return tuple(TarMember.from_path(arcname, UPath(path)) for arcname, path in named)


def merge_keys(state: SourceState, metadata: SourceMetadata) -> list[str]:
    """The files to merge, or a MergeError naming what stops the merge."""
    if metadata.require_all_files and (state.failed or state.pending):
        named = ", ".join(f"{key} ({failure['step']}: {failure['error']})" for key, failure in sorted(state.failed.items())[:20])
        raise MergeError(f"source {metadata.source}: metadata.json sets require_all_files, but {len(state.failed)} file(s) failed "
                         f"and {len(state.pending)} are pending{': ' + named if named else ''}")
    if not state.verified:
        raise MergeError(f"source {metadata.source}: no file is verified yet ({len(state.failed)} failed, {len(state.pending)} pending)")
    return state.verified


def failed_files(state: SourceState, urls: dict[str, str]) -> list[dict]:
    """The failed files as the report lists them: key, URL, step, error, whether a retry may help."""
    return [{"key": key, "url": urls.get(key, ""), "step": failure["step"], "error": failure["error"], "transient": failure["transient"]}
            for key, failure in sorted(state.failed.items())]


def write_report(root: Path, source: str, report: dict) -> Path:
    """``report.json`` beside the merged outputs, so the state table survives outside Dagster too."""
    path = merged_dir(root, source) / "report.json"
    atomic_write_text(UPath(path), json.dumps(report, indent=1, sort_keys=True) + "\n")
    return path
