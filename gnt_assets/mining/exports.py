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
route (``drive`` or ``direct``), state and attempts; the sensor updates it. Every
writer (the exports and region runs, the sensor, the janitor) goes through
:func:`update_ledger`: only the records it changed, merged into the ledger as it
is on disk under the ledger's lock, written atomically. The ledger's first line
summarizes it (:func:`ledger_summary`), so a sensor tick parses only the ledgers
whose tasks changed state or that have exports waiting for a free slot. At most
``max_in_flight`` Drive tasks (all partitions together) are submitted and not yet
finished; the others wait as ``QUEUED`` until the sensor finds a free slot.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import geopandas as gpd
import numpy as np
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text, is_local, local_lock, swap_object
from gnt_assets.core.errors import InputError
from gnt_assets.core.worldgrid import TILE_COLUMNS, TILE_SIZE, WORLD

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


class TaskListing:
    """Earth Engine's tasks from one listing (oldest first), for a whole sensor tick or run: states by task id
    (polling) and the newest task per description (the look-up before submitting)."""

    def __init__(self, tasks: Iterable[TaskState] = ()) -> None:
        self.by_id: dict[str, TaskState] = {}
        self.newest: dict[str, TaskState] = {}
        for task in tasks:
            self.by_id[task.task_id] = task
            self.newest[task.description] = task


@dataclass
class ExportRecord:
    spec: ExportSpec
    route: str
    task_id: str = ""
    state: str = "READY"
    attempts: int = 1  # the attempt number in ``spec.description``
    errors: list[str] = field(default_factory=list)
    downloaded: bool = False
    first_attempt: int = 1  # attempts since the last reset count towards the resubmission limit

    @property
    def tries(self) -> int:
        return self.attempts - self.first_attempt + 1


def description(country: str, cluster_id: str, year: int | str) -> str:
    """The base of a cluster-year's export descriptions (and Drive file names): attempts and pieces extend it."""
    return f"LANDSAT_C02_T1_L2_{country}_{cluster_id[:8]}_{year}"


_ATTEMPT = re.compile(r"_a(\d+)$")


def with_attempt(name: str, attempt: int) -> str:
    """``name`` for attempt ``attempt``: ``..._2020_a2``. A new attempt never finds an older attempt's task."""
    return f"{_ATTEMPT.sub('', name)}_a{int(attempt)}"


def attempt_of(name: str) -> int:
    match = _ATTEMPT.search(name)
    return int(match.group(1)) if match else 1


def base_of(name: str) -> str:
    return _ATTEMPT.sub("", name)


def files_of(listed: list, name: str) -> list:
    """The Drive files of exactly this export: ``{name}.tif`` or its shards ``{name}-{row}-{col}.tif`` (a prefix
    listing of ``..._a1`` also returns ``..._a10``)."""
    return [f for f in listed if f.name == f"{name}.tif" or f.name.startswith(f"{name}-")]


def next_attempt(record: ExportRecord, error: str = "") -> ExportRecord:
    """The record for its next attempt: a new description, no task yet."""
    attempt = record.attempts + 1
    errors = [*record.errors, error] if error else record.errors
    return replace(record, spec=replace(record.spec, description=with_attempt(record.spec.description, attempt)),
                   attempts=attempt, task_id="", errors=errors)


def reset_record(record: ExportRecord, reason: str = "reset") -> ExportRecord:
    """Back to "to export": the next attempt, queued, not downloaded, with a fresh resubmission budget."""
    redo = next_attempt(record, reason)
    return replace(redo, state=QUEUED, downloaded=False, first_attempt=redo.attempts)


def reset_clusters(records: list[ExportRecord], cluster_ids: list[str], reason: str = "reset") -> tuple[list[ExportRecord], list[str]]:
    """Reset every record whose cluster id starts with one of ``cluster_ids`` (8 characters are enough);
    returns the records and the descriptions reset. An id matching nothing raises naming it."""
    wanted = [c.strip().lower() for c in cluster_ids if c.strip()]
    unknown = [c for c in wanted if not any(r.spec.cluster_id.startswith(c) for r in records)]
    if unknown:
        raise ExportError(f"reset: no export of cluster {', '.join(unknown)} in this country-year")
    out, done = [], []
    for record in records:
        if any(record.spec.cluster_id.startswith(c) for c in wanted):
            record = reset_record(record, reason)
            done.append(record.spec.description)
        out.append(record)
    return out, done


def export_request(spec: ExportSpec) -> dict:
    """How masked pixels are written: the unmask value and the Drive GeoTIFF's format options.

    Without it Earth Engine writes 0 for masked pixels (the local stand-in does the same).
    """
    return {"unmask": spec.nodata, "format_options": {"noData": spec.nodata}}


def tiles_geometry(tiles) -> shapely.Geometry:
    """The union of whole world tiles ``[[ix, iy], ...]`` (one polygon per connected block), without the
    vertices the union leaves along straight edges: a 7 x 7 block is 5 vertices, not 29 (the clip is stored in
    every ledger record and sent with every request)."""
    pairs = np.asarray([[int(ix), int(iy)] for ix, iy in tiles], dtype=np.float64).reshape(-1, 2)
    union = shapely.coverage_union_all(shapely.box(pairs[:, 0], pairs[:, 1], pairs[:, 0] + 1, pairs[:, 1] + 1))
    blocks = shapely.simplify(union, 0)  # exact in tile units: only collinear vertices go
    a, size = WORLD.affine, TILE_SIZE * WORLD.affine.a
    return shapely.affinity.affine_transform(blocks, [size, 0, 0, -size, a.c, a.f])


@functools.lru_cache(maxsize=16384)
def _tile_block(tiles_key: bytes) -> tuple[int, int, tuple[float, ...], str]:
    """Width, height, crsTransform and clip of a block of tiles (int64 [ix, iy] pairs as bytes). Cached: a
    cluster's block is the same every year, and the clip's union is most of the cost of planning 41 years."""
    tiles = np.frombuffer(tiles_key, dtype=np.int64).reshape(-1, 2)
    col0, row0 = int(tiles[:, 0].min()) * TILE_SIZE, int(tiles[:, 1].min()) * TILE_SIZE
    col1, row1 = (int(tiles[:, 0].max()) + 1) * TILE_SIZE, (int(tiles[:, 1].max()) + 1) * TILE_SIZE
    a = WORLD.affine @ Affine.translation(col0, row0)
    return col1 - col0, row1 - row0, (a.a, a.b, a.c, a.d, a.e, a.f), shapely.to_wkt(tiles_geometry(tiles), rounding_precision=-1)


def _tile_spec(cluster, year: int, tiles: np.ndarray, name: str) -> ExportSpec:
    """The export of a block of whole world tiles: its bounding rectangle on the grid, clipped to the tiles."""
    width, height, transform, clip = _tile_block(np.ascontiguousarray(tiles, dtype=np.int64).tobytes())
    return ExportSpec(cluster_id=cluster.cluster_id, country=cluster.country, year=int(year), description=name,
                      width=width, height=height, crs_transform=transform, clip_wkt=clip)


def export_specs(cluster, year: int) -> list[ExportSpec]:
    """The exports of one clusters-table row for a year, on the world grid: one, or two for a cluster across the
    antimeridian (its tiles west of 180, ``_E`` (the eastern hemisphere's edge), and east of -180, ``_W``), each
    landing in its own world tiles."""
    tiles = np.asarray([[int(ix), int(iy)] for ix, iy in cluster.tiles], dtype=np.int64).reshape(-1, 2)
    name = description(cluster.country, cluster.cluster_id, year)
    if not cluster.crosses_antimeridian:
        return [_tile_spec(cluster, year, tiles, with_attempt(name, 1))]
    near_180 = tiles[:, 0] >= TILE_COLUMNS // 2
    pieces = ((near_180, "E"), (~near_180, "W"))
    return [_tile_spec(cluster, year, tiles[side], with_attempt(f"{name}_{suffix}", 1)) for side, suffix in pieces if side.any()]


def export_spec(cluster, year: int) -> ExportSpec:
    """The one export of a cluster that does not cross the antimeridian."""
    specs = export_specs(cluster, year)
    if len(specs) != 1:
        raise ExportError(f"{cluster.country} cluster {cluster.cluster_id[:8]} crosses the antimeridian: {len(specs)} exports, use export_specs")
    return specs[0]


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


def summary_in_flight(summary: dict) -> int:
    """:func:`active_tasks` from a ledger's summary."""
    return sum(1 for _, task_id, state, _ in summary["open"] if task_id and state in ACTIVE)


def in_flight(root: UPath) -> int:
    """Earth Engine tasks submitted and not finished, over every country-year's ledger (from their summaries)."""
    summaries = [(path, read_summary(path)) for path in ledger_paths(root)]
    return sum(active_tasks(read_ledger(path)) if summary is None else summary_in_flight(summary) for path, summary in summaries)


def _plain(record: ExportRecord) -> dict:
    """``asdict(record)`` without its recursive deep copy (4x faster; the direct pool rewrites the ledger per export)."""
    return {**vars(record), "spec": {**vars(record.spec), "crs_transform": list(record.spec.crs_transform)}, "errors": list(record.errors)}


def ledger_summary(records: list[ExportRecord]) -> dict:
    """What polling needs to know of a ledger without its records: every export not done (route, task, state,
    tries), how many records and downloaded ones, the attempts in all."""
    return {"records": len(records), "downloaded": sum(r.downloaded for r in records), "attempts": sum(r.attempts for r in records),
            "open": [[r.route, r.task_id, r.state, r.tries] for r in records if r.state != DONE]}


def write_ledger(path: UPath, records: list[ExportRecord], lines: list[str | None] | None = None) -> list[str]:
    """The whole ledger: its summary on the first line (so the sensor can skip the records), then one record a
    line (``json.dumps`` without indent runs in C: 10x faster at world scale); ``lines`` holds records' lines as
    read, reused for the unchanged ones. Returns the records' lines. Only for a ledger no one else writes yet;
    changes go through :func:`update_ledger`."""
    text, written = ledger_text(records, lines)
    atomic_write_text(path, text)
    return written


def ledger_text(records: list[ExportRecord], lines: list[str | None] | None = None) -> tuple[str, list[str]]:
    """The ledger's text (see :func:`write_ledger`) and its records' lines."""
    written = [line or json.dumps(_plain(r)) for r, line in zip(records, lines or [None] * len(records), strict=True)]
    return "\n".join([json.dumps({"summary": ledger_summary(records)}), "[", ",\n".join(written), "]\n"]), written


def read_summary(path: UPath) -> dict | None:
    """The ledger's summary from its first line, without reading the records (None for a ledger without one)."""
    with path.open("r") as handle:
        line = handle.readline()
    return json.loads(line)["summary"] if line.startswith("{") else None


@dataclass
class LedgerSnapshot:
    """A ledger as read, so that a writer can write back only what it changed: its stamp before the read and
    each record's line as on disk (None for a ledger in the older, indented format)."""

    records: list[ExportRecord]
    stamp: list
    lines: list[str] | None


def read_snapshot(path: UPath) -> LedgerSnapshot:
    if not path.exists():
        return LedgerSnapshot([], [], [])
    stamp = ledger_stamp(path)
    text = path.read_text()
    records = _parse(text)
    lines = None
    if text.startswith("{"):
        body = text.split("\n")[2:-2] if records else []
        lines = [line.removesuffix(",") for line in body] if len(body) == len(records) else None
    return LedgerSnapshot(records, stamp, lines)


def read_ledger(path: UPath) -> list[ExportRecord]:
    return _parse(path.read_text()) if path.exists() else []


def _parse(text: str) -> list[ExportRecord]:
    if text.startswith("{"):  # the summary line
        text = text[text.index("\n") + 1 :]
    records = []
    for item in json.loads(text):
        spec = item.pop("spec")
        spec["crs_transform"] = tuple(spec["crs_transform"])
        records.append(ExportRecord(spec=ExportSpec(**spec), **item))
    return records


def ledger_key(record: ExportRecord) -> str:
    """A record's identity across attempts: its export's base description (cluster, year, piece)."""
    return base_of(record.spec.description)


def update_ledger(path: UPath, before: list[ExportRecord], after: list[ExportRecord], theirs_win: bool = False,
                  snapshot: LedgerSnapshot | None = None) -> list[ExportRecord]:
    """One writer's changes merged into the ledger as it is now, under the ledger's lock: the records of ``after``
    that differ from ``before`` (by :func:`ledger_key`), the ones it added and removed; every other record stays
    as on disk, so a writer working from a snapshot never undoes another's change. A record changed on disk since
    ``before`` keeps the disk's version when ``theirs_win`` (the sensor's compare-and-swap: its change is redone
    from the next listing), else takes this writer's (a run's downloaded mark stands). ``snapshot`` (the whole
    ledger as read, ``before`` its records) spares the re-read and the unchanged records' encoding when no one
    wrote since; once written it holds the ledger as written (for a writer updating one record after another).

    Returns the ledger as written; nothing is read or written when nothing changed (``after`` then). Writers on
    one machine take turns under an ``flock``; on object stores, where no lock reaches the other services, the
    merge is a compare-and-swap (:func:`~gnt_assets.core.atomic.swap_object`): redone on a fresh read whenever
    another writer wrote first."""
    old = {ledger_key(r): r for r in before}
    key_of = {id(r): key for key, r in old.items()}  # a record kept as it was is the same object: no regex, no compare
    changed, kept = {}, set()
    for record in after:
        key = key_of.get(id(record)) or ledger_key(record)
        kept.add(key)
        if old.get(key) is not record and old.get(key) != record:
            changed[key] = record
    removed = old.keys() - kept
    if not changed and not removed:
        return after

    def merged_with(disk: list[ExportRecord], disk_lines: list[str | None]) -> tuple[list[ExportRecord], list[str | None]]:
        mine, merged, lines = dict(changed), [], []
        for record, line in zip(disk, disk_lines, strict=True):
            key = key_of.get(id(record)) or ledger_key(record)
            raced = theirs_win and old.get(key) is not record and record != old.get(key)
            if key in mine:
                change = mine.pop(key)
                record, line = (record, line) if raced else (change, None)
            elif key in removed and not raced:
                continue
            merged.append(record)
            lines.append(line)
        merged += [r for key, r in mine.items() if not (theirs_win and key in old)]  # a record gone from disk stays gone
        return merged, lines + [None] * (len(merged) - len(lines))

    if is_local(path):
        with local_lock(path):
            if snapshot is not None and path.exists() and ledger_stamp(path) == snapshot.stamp:
                disk, disk_lines = snapshot.records, snapshot.lines or [None] * len(snapshot.records)  # not read again
            else:
                disk = read_ledger(path)
                disk_lines = [None] * len(disk)
            merged, lines = merged_with(disk, disk_lines)
            lines = write_ledger(path, merged, lines)
            stamp = ledger_stamp(path)
    else:
        outcome = {}

        def swapped(data: bytes | None) -> bytes:
            disk = _parse(data.decode()) if data else []
            outcome["records"], lines = merged_with(disk, [None] * len(disk))
            text, outcome["lines"] = ledger_text(outcome["records"], lines)
            return text.encode()

        swap_object(path, swapped)
        merged, lines, stamp = outcome["records"], outcome["lines"], [None]  # a stamp no ledger has: read again
    if snapshot is not None:  # now the ledger as written, for this writer's next update
        snapshot.records, snapshot.lines, snapshot.stamp = merged, lines, stamp
    return merged


def upgrade_ledger(path: UPath, snapshot: LedgerSnapshot) -> bool:
    """Rewrite a ledger of the older format (no summary line) as it was read, unless someone wrote it since: from
    then on the sensor reads only its summary while it is quiet. True if rewritten."""
    if snapshot.lines is not None:
        return False
    with local_lock(path):
        if not path.exists() or ledger_stamp(path) != snapshot.stamp:
            return False
        write_ledger(path, snapshot.records)
    return True


def ledger_stamp(path: UPath) -> list:
    """What changes whenever the ledger is rewritten (every write is a new file: a new inode locally; on object
    stores the ETag, since modification times there have whole seconds)."""
    if not is_local(path):
        return [path.fs.info(path.path, refresh=True)["ETag"]]
    stat = path.stat()
    return [getattr(stat, "st_mtime_ns", stat.st_mtime), stat.st_size, getattr(stat, "st_ino", 0)]


def failed_for_good(record: ExportRecord, max_attempts: int) -> bool:
    return record.state in FAILED_STATES and record.tries >= max_attempts


def skipped_clusters(records: list[ExportRecord], max_attempts: int = 3) -> set[str]:
    """Clusters the region step leaves out: an export failed for good and not in the region."""
    return {r.spec.cluster_id for r in records if failed_for_good(r, max_attempts) and not r.downloaded}


def without_skipped(root: UPath, country: str, year: str | int, clusters: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The clusters a country-year's region, tiles and checks cover: all but the skipped ones."""
    skipped = skipped_clusters(read_ledger(ledger_path(root, country, year)))
    return clusters[~clusters["cluster_id"].isin(skipped)] if skipped else clusters


def partition_state(records: list[ExportRecord], max_attempts: int) -> str:
    """``complete`` (every export done), ``partial`` (the others done, some failed ``max_attempts`` times: the
    region is written without them, they are named), ``failed`` (nothing done) or ``running``."""
    return summary_state(ledger_summary(records), max_attempts)


def summary_state(summary: dict, max_attempts: int) -> str:
    """:func:`partition_state` from a ledger's summary."""
    settled = all(state in FAILED_STATES and tries >= max_attempts for _, _, state, tries in summary["open"])
    if not summary["records"] or not settled:
        return "running"
    done = summary["records"] - len(summary["open"])
    return "complete" if done == summary["records"] else "partial" if done else "failed"


def with_state(record: ExportRecord, task: TaskState) -> ExportRecord:
    errors = [*record.errors, task.error] if task.error and task.error not in record.errors else record.errors
    return replace(record, task_id=task.task_id, state=task.state, errors=errors)


def clusters_by_id(clusters: gpd.GeoDataFrame) -> dict[str, object]:
    return {row.cluster_id: row for row in clusters.itertuples()}
