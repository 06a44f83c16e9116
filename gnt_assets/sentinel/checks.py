"""Per-partition checks of the cube: region written, reflectance plausible, no fill where clear
observations existed (blocking); scenes found and valid share above a floor (soft)."""

from collections.abc import Callable

import dagster as dg
import geopandas as gpd
import numpy as np
import shapely
import shapely.validation

from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import sentinel_month_chunk
from gnt_assets.resources.storage import StorageResource
from gnt_assets.sentinel import chunk_runs
from gnt_assets.sentinel.assets import sentinel_aoi, sentinel_mosaic, sentinel_run_log
from gnt_assets.sentinel.cube import axis_problems, month_index
from gnt_assets.sentinel.radiometry import CUBE_OFFSET, CUBE_SCALE
from gnt_assets.sentinel.resources import SentinelCubeResource

VALID_SHARE_FLOOR = 0.5
REFLECTANCE_RANGE = (1, 20_000)  # cube DN: (rho + 0.1) * 1e4; above 1.9 reflectance is not a surface


def _region_written(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    statuses = [cube.status(region) for cube, region in chunk_runs.partition_regions(storage, grid, month, chunk, backend)]
    present, expected = sum(s.present for s in statuses), sum(s.expected for s in statuses)
    marked = all(s.marked for s in statuses)
    return all(s.complete for s in statuses), f"{present}/{expected} chunks, marker {'present' if marked else 'missing'}"


def _reflectance_plausible(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    values = np.concatenate([v.ravel() for v in chunk_runs.stored_values(storage, grid, month, chunk, backend)])  # CF-decoded
    valid = values[np.isfinite(values)]
    if valid.size == 0:
        return True, "no valid pixels"
    low, high = (round((float(v) - CUBE_OFFSET) / CUBE_SCALE) for v in (valid.min(), valid.max()))
    return REFLECTANCE_RANGE[0] <= low and high <= REFLECTANCE_RANGE[1], \
        f"DN {low}..{high} (reflectance {float(valid.min()):.4f}..{float(valid.max()):.4f})"


def _no_fill_where_clear(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    cells = chunk_runs.stored_values(storage, grid, month, chunk, backend)
    fill_share = float(np.mean([(~np.isfinite(v)).all(axis=-1).mean() for v in cells]))  # the cells' mean, as valid_share
    expected = 1.0 - result["valid_share"]
    passed = result["clear_pixels_unfilled"] == 0 and abs(fill_share - expected) < 1e-9
    return passed, f"fill share {fill_share:.4f} stored, {expected:.4f} expected; {result['clear_pixels_unfilled']} clear pixels left as fill"


def _time_axis_monthly(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    stores = {str(cube.path): cube for _, cube, _ in chunk_runs.partition_stores(storage, grid, chunk, backend)}
    index, spans, problems = month_index(month), set(), []
    for path, cube in stores.items():  # the zone cube, or each Major TOM cell's own image
        times = cube.open()["time"].values
        found = axis_problems(times)
        if not found and (index >= times.size or str(times[index])[:10] != month[:10]):
            found.append(f"month {month[:7]} is not at its index {index}")
        problems += [f"{path}: {p}" for p in found] if len(stores) > 1 else found
        spans.add(f"{len(times)} months {str(times[0])[:7]}..{str(times[-1])[:7]}" if len(times) else "no months")
    span = "; ".join(sorted(spans)) + (f" in {len(stores)} stores" if len(stores) > 1 else "")
    return not problems, f"{span}; " + ("strictly increasing, monthly, no gaps" if not problems else problems[0])


def _scenes_found(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    return result["scenes"] > 0, f"{result['scenes']} scenes" + ("" if result["scenes"] else "; the region holds fill values")


def _valid_share(storage, grid, month, chunk, result, backend) -> tuple[bool, str]:
    return result["valid_share"] >= VALID_SHARE_FLOOR, f"valid share {result['valid_share']:.3f} (floor {VALID_SHARE_FLOOR})"


CHECKS: dict[str, tuple[Callable, bool, str]] = {
    "region_written": (_region_written, True, "Every zarr chunk of the partition's region exists (zarr: its completion marker too; Icechunk: its commit)."),
    "time_axis_monthly": (_time_axis_monthly, True, "The cube's time axis is strictly increasing, monthly from 2017-01 without gaps, and the month is at its own index."),
    "reflectance_plausible": (_reflectance_plausible, True, f"Stored DN within {REFLECTANCE_RANGE} (uint16 reflectance scale)."),
    "no_fill_where_clear": (_no_fill_where_clear, True, "Fill (0) only where no scene had a clear (SCL 4/5) observation."),
    "scenes_found": (_scenes_found, False, "The month had at least one scene for the cell (else the region is fill)."),
    "valid_share_floor": (_valid_share, False, f"At least {VALID_SHARE_FLOOR:.0%} of the cell has a median value."),
}


def _mosaic_check(name: str) -> dg.AssetChecksDefinition:
    finding, blocking, description = CHECKS[name]

    @dg.asset_check(asset=sentinel_mosaic, name=name, partitions_def=sentinel_month_chunk, blocking=blocking,
                    description=description)
    def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource,
               sentinel_cube: SentinelCubeResource) -> dg.AssetCheckResult:
        grid = read_table(chunk_runs.grid_table_path(storage))
        outcomes = {}
        for key in context.partition_keys:
            month, chunk = key.keys_by_dimension["month"], key.keys_by_dimension["chunk"]
            outcomes[f"{month}|{chunk}"] = finding(storage, grid, month, chunk, chunk_runs.read_result(storage, month, chunk),
                                                  sentinel_cube.backend)
        bad = [k for k, (ok, _) in outcomes.items() if not ok]
        return dg.AssetCheckResult(
            passed=not bad, severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
            metadata={"finding": dg.MetadataValue.text("; ".join(f"{k}: {t}" for k, (_, t) in outcomes.items())),
                      "failed_partitions": dg.MetadataValue.text(", ".join(bad) or "none")})

    return _check


mosaic_checks = [_mosaic_check(name) for name in CHECKS]


@dg.asset_check(asset=sentinel_run_log, description="Warns while the latest attempt of any month/chunk failed.")
def no_failed_chunks(storage: StorageResource) -> dg.AssetCheckResult:
    log = chunk_runs.run_log(storage)
    failed = log[log["success"] == False]  # noqa: E712 (pandas element-wise)
    return dg.AssetCheckResult(passed=failed.empty, severity=dg.AssetCheckSeverity.WARN, metadata={
        "attempts": len(log), "failed": dg.MetadataValue.text(", ".join(f"{m}|{c}" for m, c in zip(failed["month"], failed["chunk"], strict=False)) or "none")})


@dg.asset_check(asset="sentinel_grid", blocking=True, description="The grid has cells and no two cells share a zarr chunk.")
def grid_layout_disjoint(storage: StorageResource) -> dg.AssetCheckResult:
    grid = read_table(chunk_runs.grid_table_path(storage))
    counts = {}
    for name, cells in grid.groupby("grid"):
        if chunk_runs.is_tiled(cells.iloc[0]):  # cells on the zone's chunk lattice: disjoint by construction
            counts[name] = (len(cells), len(cells), cells["chunk"].nunique())
            continue
        layout = chunk_runs.layout_for(cells)
        owned = [layout.chunks_of(c) for c in cells["chunk"]]
        counts[name] = (len(cells), sum(len(o) for o in owned), len(set().union(*owned)))
    passed = bool(counts) and all(total == unique for _, total, unique in counts.values())
    return dg.AssetCheckResult(passed=passed, metadata={
        "grids": dg.MetadataValue.text("; ".join(f"{n}: {c} cells, {t} chunks, {u} distinct" for n, (c, t, u) in counts.items()) or "no cells")})


@dg.asset_check(asset=sentinel_aoi, blocking=True,
                description="The AOI is one valid, non-empty polygon in EPSG:4326 inside the longitude/latitude range.")
def aoi_is_valid_area(sentinel_aoi: gpd.GeoDataFrame) -> dg.AssetCheckResult:
    geometry = sentinel_aoi.geometry.iloc[0] if len(sentinel_aoi) else None
    problems = []
    if geometry is None or geometry.is_empty:
        problems.append("empty geometry")
    else:
        if not geometry.is_valid:
            problems.append(f"invalid geometry ({shapely.validation.explain_validity(geometry)})")
        if geometry.geom_type not in ("Polygon", "MultiPolygon"):
            problems.append(f"{geometry.geom_type} is not an area")
        west, south, east, north = geometry.bounds
        if west < -180 or east > 180 or south < -90 or north > 90:
            problems.append(f"bounds {geometry.bounds} leave the longitude/latitude range")
    if sentinel_aoi.crs is None or sentinel_aoi.crs.to_epsg() != 4326:
        problems.append(f"CRS is {sentinel_aoi.crs}, not EPSG:4326")
    return dg.AssetCheckResult(passed=not problems, metadata={
        "area_km2": dg.MetadataValue.float(float(sentinel_aoi["area_km2"].sum()) if len(sentinel_aoi) else 0.0),
        "problems": dg.MetadataValue.text("; ".join(problems) or "none")})
