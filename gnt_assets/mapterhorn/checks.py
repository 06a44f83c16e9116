"""Checks of the Mapterhorn assets, as check specs the assets evaluate on their own outputs.

The per-step checks run in the pool on each file's step record (a file that fails
one stops its own chain and nothing else); the per-file asset reports them as one
evaluation per run. Outputs a later step already consumed are judged by the
step's record, so a resumed run still checks.
"""

from __future__ import annotations

import math
from pathlib import Path

import dagster as dg
import geopandas as gpd
import rasterio

from gnt_assets.core.tarball import Tarball

WEB_MERCATOR_EDGE = 20037508.342789244


def spec(asset: str, name: str, description: str, *, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name=name, asset=asset, description=description, blocking=blocking)


def _present(record: dict) -> list[Path]:
    return [Path(p) for p in record["outputs"] if Path(p).exists()]


def _result(name: str, problems: list[str], **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, passed=not problems, metadata={"problems": "; ".join(problems) or "none", **metadata})


def download_verified(record: dict) -> dg.AssetCheckResult:
    problems = [] if record["bytes"] > 0 or record.get("resumed") else ["downloaded file is empty"]
    problems += [] if len(record.get("md5", "")) == 32 else ["no MD5 recorded"]
    return _result("download_verified", problems, bytes=record["bytes"], attempts=record.get("attempts", 0))


def rasters_found(record: dict) -> dg.AssetCheckResult:
    return _result("rasters_found", [] if record["outputs"] else ["no raster in the download"], rasters=len(record["outputs"]))


def every_raster_has_crs(record: dict) -> dg.AssetCheckResult:
    problems = []
    for path in _present(record):
        with rasterio.open(path) as dataset:
            if dataset.crs is None:
                problems.append(f"{path.name} has no CRS")
    return _result("every_raster_has_crs", problems, rasters=len(record["outputs"]))


def valid_cog(record: dict) -> dg.AssetCheckResult:
    """Every COG of the record in place and non-empty, one per name. The COG step wrote each under a temporary name,
    validated it (rio-cogeo, LERC, 512 blocks, no overviews, pixels read back against its input) and only then renamed
    it, so validating the renamed file again would repeat that work on the same bytes."""
    paths = _present(record)
    problems = [f"{Path(p).name} is missing" for p in record["outputs"] if not Path(p).exists()]
    problems += [f"{p.name} is empty" for p in paths if p.stat().st_size == 0]
    problems += [] if sorted(record.get("names", [])) == sorted(Path(p).name for p in record["outputs"]) else ["names differ from the outputs"]
    problems += [] if record["outputs"] else ["no COG"]
    return _result("valid_cog", problems, cogs=len(paths))


def bounds_in_web_mercator(record: dict) -> dg.AssetCheckResult:
    problems = []
    for path in _present(record):
        for row in path.read_text().splitlines():
            name, *numbers = row.split(",")
            left, bottom, right, top, width, height = (float(v) for v in numbers)
            if not all(math.isfinite(v) for v in (left, bottom, right, top)):
                problems.append(f"{name}: non-finite bounds")
            elif not (-WEB_MERCATOR_EDGE - 1 <= left < right <= WEB_MERCATOR_EDGE + 1 and -WEB_MERCATOR_EDGE - 1 <= bottom < top <= WEB_MERCATOR_EDGE + 1):
                problems.append(f"{name}: bounds outside EPSG:3857 or inverted")
            if width <= 0 or height <= 0:
                problems.append(f"{name}: empty raster")
    return _result("bounds_in_web_mercator", problems)


def coverage_not_empty(record: dict) -> dg.AssetCheckResult:
    """The polygon file in place (or merged) with a positive area. The polygon step read the GeoPackage back and
    refused it unless its polygons are valid and not empty, so it is not read a second time here."""
    problems = [f"{Path(p).name} is missing" for p in record["outputs"] if not Path(p).exists() and not record.get("merged")]
    problems += [] if record.get("polygons", 0) >= 1 and record.get("area", 0.0) > 0 else ["empty polygon"]
    return _result("coverage_not_empty", problems, area=record.get("area", 0.0))


def one_row_per_cog(bounds_csv: Path, cog_names: list[str]) -> dg.AssetCheckResult:
    names = [row.split(",", 1)[0] for row in bounds_csv.read_text().splitlines()[1:]]
    problems = [] if names == sorted(cog_names) else [f"rows {names} do not match the COGs {sorted(cog_names)}"]
    return _result("one_row_per_cog", problems, rows=len(names))


def merged_coverage_valid(coverage: Path) -> dg.AssetCheckResult:
    frame = gpd.read_file(coverage)
    ok = len(frame) == 1 and frame.geometry.is_valid.all() and not frame.geometry.is_empty.all()
    return _result("merged_coverage_valid", [] if ok else ["coverage.gpkg is not one valid, non-empty polygon"], area=float(frame.area.sum()))


def tarball_matches_md5(tarball: Tarball, expected: tuple[str, ...]) -> dg.AssetCheckResult:
    problems = [] if tarball.members == expected else [f"members {tarball.members} differ from {expected}"]
    return _result("tarball_matches_md5", problems, md5=tarball.md5)


def one_row_per_listed_file(frame, keys: list[str]) -> dg.AssetCheckResult:
    rows = list(frame["key"])
    problems = [] if rows == keys and len(set(rows)) == len(rows) else [f"{len(rows)} rows for {len(keys)} listed files"]
    return _result("one_row_per_listed_file", problems, rows=len(rows))


def no_failed_files(failed: int) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="no_failed_files", passed=failed == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"failed_files": failed}
    )
