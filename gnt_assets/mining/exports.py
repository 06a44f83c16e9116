"""Earth Engine export requests per cluster and year, and the ledger that tracks them.

An export asks for ``LANDSAT/COMPOSITES/C02/T1_L2_ANNUAL`` of one year clipped to
the cluster footprint, on the world grid (EPSG:4326 with the grid's
``crsTransform`` over the cluster's tile-aligned region), so the result needs no
resampling. The description ``LANDSAT_C02_T1_L2_{ISO3}_{cluster8}_{year}`` is the
idempotency key: an existing task with it is reused, never submitted twice.

Nodata: Earth Engine writes masked pixels as 0 in GeoTIFFs unless told otherwise,
and 0 is a valid reflectance. Every export therefore states its nodata: the
image is unmasked to :data:`NODATA` (-9999, recorded in the spec and the ledger)
and Drive GeoTIFFs carry it as their nodata tag (``formatOptions.noData``);
:func:`export_request` is that request, used by the real client and the local
stand-in alike. Downloads turn the declared value into NaN, the region stores'
"no data". The clip is the union of the cluster's whole world tiles (the seed's
rule), so tiles at a cluster's edge are never partly empty by construction.

The ledger (``mining/exports/{ISO3}/{year}.json``) records each cluster's task,
route (``drive`` or ``direct``), state and attempts; the sensor updates it. At most
``max_in_flight`` Drive tasks (all partitions together) are submitted and not yet
finished; the others wait as ``QUEUED`` until the sensor finds a free slot.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.errors import InputError
from gnt_assets.core.worldgrid import TILE_SIZE, WORLD

COLLECTION = "LANDSAT/COMPOSITES/C02/T1_L2_ANNUAL"
COMPUTE_PIXELS_MAX_BYTES = 48 * 2**20
COMPUTE_PIXELS_MAX_SIDE = 32768
DONE, FAILED_STATES, ACTIVE = "COMPLETED", ("FAILED", "CANCELLED"), ("READY", "RUNNING", "PENDING", "SUBMITTED", "CANCEL_REQUESTED")
QUEUED = "QUEUED"  # not submitted yet: waits for a free slot under the in-flight limit (the seed's MAX_SUBMITTED_TASKS)
MAX_IN_FLIGHT = 10
NODATA = -9999.0  # masked pixels in every export (unmask value and GeoTIFF nodata tag); no band can take it


class ExportError(InputError):
    """A cluster that cannot be exported as asked."""


@dataclass(frozen=True)
class ExportSpec:
    cluster_id: str
    country: str
    year: int
    description: str
    width: int
    height: int
    crs_transform: tuple[float, float, float, float, float, float]  # EE order: a, b, c, d, e, f
    clip_wkt: str
    nodata: float = NODATA

    @property
    def nbytes(self) -> int:
        return self.width * self.height * 7 * 4

    @property
    def geobox(self) -> GeoBox:
        return GeoBox((self.height, self.width), Affine(*self.crs_transform), WORLD.crs)


@dataclass(frozen=True)
class TaskState:
    task_id: str
    description: str
    state: str
    error: str = ""


@dataclass
class ExportRecord:
    spec: ExportSpec
    route: str
    task_id: str = ""
    state: str = "READY"
    attempts: int = 1
    errors: list[str] = field(default_factory=list)
    downloaded: bool = False


def description(country: str, cluster_id: str, year: int | str) -> str:
    return f"LANDSAT_C02_T1_L2_{country}_{cluster_id[:8]}_{year}"


def export_request(spec: ExportSpec) -> dict:
    """How masked pixels are written: the unmask value and the Drive GeoTIFF's format options.

    Without it Earth Engine writes 0 for masked pixels (the local stand-in does the same).
    """
    return {"unmask": spec.nodata, "format_options": {"noData": spec.nodata}}


def tiles_geometry(tiles) -> shapely.Geometry:
    """The union of whole world tiles ``[[ix, iy], ...]`` (one polygon per connected block)."""
    pairs = np.asarray([[int(ix), int(iy)] for ix, iy in tiles], dtype=np.float64).reshape(-1, 2)
    blocks = shapely.coverage_union_all(shapely.box(pairs[:, 0], pairs[:, 1], pairs[:, 0] + 1, pairs[:, 1] + 1))  # exact in tile units
    a, size = WORLD.affine, TILE_SIZE * WORLD.affine.a
    return shapely.affinity.affine_transform(blocks, [size, 0, 0, -size, a.c, a.f])


def export_spec(cluster, year: int) -> ExportSpec:
    """The export of one clusters-table row for a year, on the world grid."""
    if cluster.crosses_antimeridian:
        raise ExportError(
            f"{cluster.country} cluster crosses the antimeridian; "
            "Earth Engine cannot export it as one EPSG:4326 grid region"
        )
    col0, row0 = (round(v) for v in ~WORLD.affine @ (cluster.minx, cluster.maxy))
    col1, row1 = (round(v) for v in ~WORLD.affine @ (cluster.maxx, cluster.miny))
    a = WORLD.affine @ Affine.translation(col0, row0)
    return ExportSpec(
        cluster_id=cluster.cluster_id,
        country=cluster.country,
        year=int(year),
        description=description(cluster.country, cluster.cluster_id, year),
        width=col1 - col0,
        height=row1 - row0,
        crs_transform=(a.a, a.b, a.c, a.d, a.e, a.f),
        clip_wkt=shapely.to_wkt(tiles_geometry(cluster.tiles), rounding_precision=-1),
    )


def route_for(spec: ExportSpec, direct_max_bytes: int = COMPUTE_PIXELS_MAX_BYTES) -> str:
    """computePixels (``direct``, no Drive) when the region fits its limits, else a Drive export."""
    limit = min(direct_max_bytes, COMPUTE_PIXELS_MAX_BYTES)
    small = spec.nbytes <= limit and max(spec.width, spec.height) <= COMPUTE_PIXELS_MAX_SIDE
    return "direct" if small else "drive"


def ledger_path(root: UPath, country: str, year: str | int) -> UPath:
    return root / "mining" / "exports" / country / f"{year}.json"


def ledger_paths(root: UPath) -> list[UPath]:
    folder = root / "mining" / "exports"
    return sorted(folder.glob("*/*.json")) if folder.exists() else []


def active_tasks(records: list[ExportRecord]) -> int:
    """Earth Engine tasks of one ledger that were submitted and have not finished."""
    return sum(1 for r in records if r.task_id and r.state in ACTIVE)


def in_flight(root: UPath) -> int:
    """Earth Engine tasks submitted and not finished, over every country-year's ledger."""
    return sum(active_tasks(read_ledger(path)) for path in ledger_paths(root))


def write_ledger(path: UPath, records: list[ExportRecord]) -> None:
    atomic_write_text(path, json.dumps([asdict(r) for r in records], indent=1))


def read_ledger(path: UPath) -> list[ExportRecord]:
    if not path.exists():
        return []
    records = []
    for item in json.loads(path.read_text()):
        spec = item.pop("spec")
        spec["crs_transform"] = tuple(spec["crs_transform"])
        records.append(ExportRecord(spec=ExportSpec(**spec), **item))
    return records


def partition_state(records: list[ExportRecord], max_attempts: int) -> str:
    """``complete``, ``failed`` (a task failed ``max_attempts`` times), or ``running``."""
    if any(r.state in FAILED_STATES and r.attempts >= max_attempts for r in records):
        return "failed"
    if records and all(r.state == DONE for r in records):
        return "complete"
    return "running"


def with_state(record: ExportRecord, task: TaskState) -> ExportRecord:
    errors = [*record.errors, task.error] if task.error and task.error not in record.errors else record.errors
    return replace(record, task_id=task.task_id, state=task.state, errors=errors)


def clusters_by_id(clusters: gpd.GeoDataFrame) -> dict[str, object]:
    return {row.cluster_id: row for row in clusters.itertuples()}
