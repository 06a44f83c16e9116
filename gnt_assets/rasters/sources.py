"""Raster sources: discovery in the watched folder and registry, sidecar metadata, validation.

A source is checked once, at registration, for what breaks everything downstream:
it opens, has a CRS and a finite north-up geotransform, and its nodata fits its dtype.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field

import blake3
import numpy as np
import rasterio
import yaml
from upath import UPath

from gnt_assets.core.atomic import located
from gnt_assets.core.errors import InputError
from gnt_assets.core.keys import PartitionKeyError, sanitize_key
from gnt_assets.core.rio import open_raster

RASTER_SUFFIXES = (".tif", ".tiff")
KINDS = ("continuous", "categorical", "count")
DEFAULT_METHODS = {"continuous": ("mean", "bilinear"), "categorical": ("majority", "nearest"), "count": ("sum",)}


class RasterSourceError(InputError):
    """A raster that cannot be registered; the message names the file and the problem."""


@dataclass(frozen=True)
class SourceEntry:
    """What the registry and sidecars say about a raster before it is opened."""

    key: str
    path: str
    name: str
    kind: str = "continuous"
    nodata: float | None = None
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SourceInfo:
    key: str
    path: str
    name: str
    kind: str
    crs: str
    width: int
    height: int
    band_count: int
    dtype: str
    nodata: float | None
    pixel_size_x: float
    pixel_size_y: float
    left: float
    bottom: float
    right: float
    top: float
    content_hash: str
    metadata_json: str

    def as_row(self) -> dict:
        return asdict(self)


def _sidecar(raster: UPath) -> dict:
    for suffix in (".yaml", ".yml", ".json"):
        side = raster.with_suffix(suffix)
        if side.exists():
            text = side.read_text()
            data = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
            if not isinstance(data, dict):
                raise RasterSourceError(f"{side}: sidecar metadata must be a mapping, got {type(data).__name__}")
            return data
    return {}


def _entry(key: str, path: UPath, meta: dict) -> SourceEntry:
    kind = meta.get("kind", "continuous")
    if kind not in KINDS:
        raise RasterSourceError(f"{path}: kind {kind!r} is not one of {', '.join(KINDS)}")
    extra = {k: v for k, v in meta.items() if k not in ("kind", "nodata", "name", "path")}
    return SourceEntry(key=key, path=str(path), name=str(meta.get("name", path.stem)), kind=kind, nodata=meta.get("nodata"), metadata=extra)


def discover(folder: UPath, registry: UPath | None, problems: list[str] | None = None) -> dict[str, SourceEntry]:
    """Rasters in the watched folder (with sidecars) and entries of the registry file, by partition key.

    Registry entries are ``{path, name, kind, nodata, ...}``; relative paths are taken from the
    registry's folder. A missing file stays in the result so registration names the problem.
    Files that cannot get a key (or collide with another file's key) and malformed registry
    entries are left out and described in ``problems``, so one bad name never stops the others.
    """
    problems = [] if problems is None else problems
    entries: dict[str, SourceEntry] = {}

    def add(name: str, path: UPath, meta_of) -> None:
        try:
            key = sanitize_key(name)
            entry = _entry(key, path, meta_of())
        except (PartitionKeyError, RasterSourceError, yaml.YAMLError, json.JSONDecodeError) as error:
            problems.append(f"{path}: skipped ({error})")
            return
        if key in entries and entries[key].path != entry.path:
            problems.append(f"{path}: skipped, its key {key!r} is already taken by {entries[key].path}; rename one of them")
            return
        entries[key] = entry

    if folder.exists():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in RASTER_SUFFIXES:
                add(path.stem, path, lambda path=path: _sidecar(path))
    if registry is not None and registry.exists():
        items = (yaml.safe_load(registry.read_text()) or {}).get("rasters", [])
        for number, item in enumerate(items, 1):
            if not isinstance(item, dict) or not item.get("path"):
                problems.append(f"{registry}: entry {number} has no 'path'; skipped")
                continue
            raw = str(item["path"])
            path = UPath(raw) if raw.startswith("/") or "://" in raw else registry.parent / raw
            add(str(item.get("key") or item.get("name") or path.stem), path,
                lambda path=path, item=item: {**_sidecar(path), **item} if path.exists() else dict(item))
    return entries


# Content hashes name their algorithm: a hash of another algorithm (the SHA-256 hex digests recorded
# before BLAKE3) never equals one of these, so nothing keyed on it is taken for the current bytes.
HASH_PREFIX = "blake3:"


def content_hash(path: UPath, chunk: int = 1 << 22, *, like: str = HASH_PREFIX) -> str:
    """The raster file's BLAKE3 digest (the result store's key and part of the data version): about three
    times SHA-256's speed on one core, and its large blocks are hashed on every core. ``like`` a hash
    registered before BLAKE3 (bare SHA-256 hex), the file's SHA-256: an old registration still verifies."""
    legacy = not like.startswith(HASH_PREFIX)
    digest = hashlib.sha256() if legacy else blake3.blake3(max_threads=blake3.blake3.AUTO)
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest() if legacy else HASH_PREFIX + digest.hexdigest()


def _check_nodata(path: UPath, dtype: str, nodata: float | None) -> None:
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        if nodata is not None and not np.issubdtype(np.dtype(dtype), np.floating):
            raise RasterSourceError(f"{path}: nodata NaN is not representable in {dtype}")
        return
    kind = np.dtype(dtype)
    limits = np.iinfo(kind) if np.issubdtype(kind, np.integer) else np.finfo(kind)
    if not (limits.min <= nodata <= limits.max) or (np.issubdtype(kind, np.integer) and nodata != int(nodata)):
        raise RasterSourceError(f"{path}: nodata {nodata} is outside the range of {dtype} [{limits.min}, {limits.max}]")


def _check_on_the_globe(path: UPath, bounds, pixel: float) -> None:
    """Longitudes past +-180 or latitudes past +-90 (within half a pixel): every grid cell and
    coverage weight downstream assumes one world, so such a raster is refused, with the fix."""
    slack = max(pixel / 2, 1e-9)
    if bounds.left < -180 - slack or bounds.right > 180 + slack:
        raise RasterSourceError(
            f"{path}: longitudes {bounds.left:g} to {bounds.right:g} run past +-180 degrees; shift or split it into "
            "-180..180 first (for example: gdalwarp -t_srs EPSG:4326 -te -180 -90 180 90 --config CENTER_LONG 0 in.tif out.tif)")
    if bounds.bottom < -90 - slack or bounds.top > 90 + slack:
        raise RasterSourceError(f"{path}: latitudes {bounds.bottom:g} to {bounds.top:g} run past +-90 degrees")


def inspect(entry: SourceEntry, like: UPath | None = None) -> SourceInfo:
    """Open and validate a source; any problem raises RasterSourceError naming the file.
    ``like``: the storage root, whose options (endpoint, credentials) a source on its filesystem needs."""
    path = located(entry.path, like)
    if not path.exists():
        raise RasterSourceError(f"{path}: registered raster {entry.key!r} points at a missing file")
    try:
        with open_raster(path) as src:
            crs, transform, dtype = src.crs, src.transform, src.dtypes[0]
            width, height, count, file_nodata = src.width, src.height, src.count, src.nodata
            bounds = src.bounds
            src.read(1, window=((height - 1, height), (width - 1, width)))  # a truncated file fails here
    except rasterio.errors.RasterioError as error:
        raise RasterSourceError(f"{path}: not a readable raster ({error})") from error
    if crs is None:
        raise RasterSourceError(f"{path}: has no CRS; set one (gdal_edit.py -a_srs) or give the file a .prj")
    if not all(math.isfinite(v) for v in transform[:6]) or transform.a == 0 or transform.e == 0:
        raise RasterSourceError(f"{path}: geotransform {tuple(transform[:6])} is not finite and invertible")
    if transform.b != 0 or transform.d != 0:
        raise RasterSourceError(f"{path}: rotated geotransforms are not supported")
    if crs.is_geographic:
        _check_on_the_globe(path, bounds, abs(transform.a))
    nodata = entry.nodata if entry.nodata is not None else file_nodata
    _check_nodata(path, dtype, nodata)
    return SourceInfo(
        key=entry.key, path=str(path), name=entry.name, kind=entry.kind, crs=crs.to_string(),
        width=width, height=height, band_count=count, dtype=dtype,
        nodata=None if nodata is None else float(nodata),
        pixel_size_x=abs(transform.a), pixel_size_y=abs(transform.e),
        left=bounds.left, bottom=bounds.bottom, right=bounds.right, top=bounds.top,
        content_hash=content_hash(path), metadata_json=json.dumps(entry.metadata, sort_keys=True, default=str),
    )


def data_version(info: SourceInfo) -> str:
    """The source's data version: its bytes and everything its sidecar or registry entry says
    about them (effective nodata, kind, name, metadata)."""
    described = json.dumps([info.content_hash, info.nodata, info.kind, info.name, info.metadata_json], sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()
