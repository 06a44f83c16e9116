"""Shared zarr v3 stores that partitions fill region by region (DESIGN section 3).

A store is created once from a *template* (coordinates plus lazily defined,
never computed data variables), so its metadata exists before any partition
runs. Each partition then writes the region its coordinate labels select.
Two rules make concurrent partitions safe:

* a region must cover whole write units (shards where the store is sharded,
  chunks otherwise), so no two partitions ever write the same object;
* a region counts as complete only once its marker is written, after the data;
  a writer killed half-way leaves no marker, and re-running rewrites the same
  objects (the write is idempotent).
"""

from __future__ import annotations

import base64
import errno
import json
import math
import os
import shutil
import struct
import tempfile
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor with_exact_transform reads)
import xarray as xr
import zarr
from upath import UPath

from gnt_assets.core.atomic import TEMP_PREFIX, atomic_write_text, is_local, local_lock, temp_sibling
from gnt_assets.core.errors import InputError
from gnt_assets.core.zarr_shards import write_whole_shards

# Codec pipelines a region write can use (``write_region(codec_pipeline=...)``, the zarr IO manager's
# ``codec_pipeline``, default from ``GNT_ZARR_CODEC_PIPELINE``, else "shards"). All write the same zarr v3 objects
# (plain zarr-python and xarray read them with the default pipeline). "shards", the default, is zarr-python's
# pipeline, except that regions of whole shards written as stored (``write_encoded``) on local disk, in arrays whose
# codecs ``gnt_assets.core.zarr_shards`` spells out (bytes, optionally zstd, in a sharding codec), are encoded on all
# cores by it into the same objects, byte for byte; anything else (object stores, other codecs, unsharded arrays,
# data going through xarray) is written by zarr-python. "default" is zarr-python's own pipeline for everything.
# "zarrs" encodes and writes the chunks from Rust threads (the ``zarrs`` package) and is used on local disk only,
# where it was measured (benchmarks/io_managers.py); object stores keep zarr-python's own pipeline.
CODEC_PIPELINES = {"default": "zarr.core.codec_pipeline.BatchedCodecPipeline", "zarrs": "zarrs.ZarrsCodecPipeline",
                   "shards": "zarr.core.codec_pipeline.BatchedCodecPipeline"}
DEFAULT_CODEC_PIPELINE = "shards"


def codec_pipeline_name(name: str | None = None) -> str:
    """The pipeline to write with: ``name``, else ``GNT_ZARR_CODEC_PIPELINE``, else "shards"."""
    name = name or os.environ.get("GNT_ZARR_CODEC_PIPELINE") or DEFAULT_CODEC_PIPELINE
    if name not in CODEC_PIPELINES:
        raise ValueError(f"zarr codec pipeline {name!r} is not one of {sorted(CODEC_PIPELINES)}")
    return name


@contextmanager
def writing_with(name: str | None, path: UPath):
    """zarr's config set to the named codec pipeline for arrays opened inside (local stores only).

    zarr's config is process-wide: a region write in another thread meanwhile uses the same
    pipeline, which writes the same objects either way."""
    name = codec_pipeline_name(name)
    if CODEC_PIPELINES[name] == CODEC_PIPELINES["default"] or not is_local(path):
        yield
        return
    with zarr.config.set({"codec_pipeline.path": CODEC_PIPELINES[name]}):
        yield


class ZarrLayoutError(InputError):
    """A store or region that does not fit the expected layout."""


@dataclass(frozen=True)
class RegionStatus:
    expected: int
    present: int
    marked: bool
    stored_bytes: int = 0  # what the present objects occupy (compressed)

    @property
    def complete(self) -> bool:
        return self.marked and self.present == self.expected


def _store_args(path: UPath) -> dict:
    if path.protocol in ("", "file", "local"):
        return {"store": path.path}
    return {"store": str(path), "storage_options": dict(path.storage_options)}


def open_store(path: UPath, dask: bool = True) -> xr.Dataset:
    """The store as a lazy dataset (nothing is read until computed). ``dask=False``: lazily indexed arrays without
    dask, so reading a small window of a store with many chunks builds no task graph over all of them."""
    extra = {} if dask else {"chunks": None}
    return xr.open_zarr(**_store_args(path), consolidated=False, zarr_format=3, **extra)


def _open_group(path: UPath, mode: str = "r") -> zarr.Group:
    args = _store_args(path)
    return zarr.open_group(args["store"], mode=mode, storage_options=args.get("storage_options"), zarr_format=3)


def store_exists(path: UPath) -> bool:
    return (path / "zarr.json").exists()


def _check_compatible(path: UPath, template: xr.Dataset, *, growable: str | None = None) -> None:
    existing = open_store(path)
    for name, variable in template.data_vars.items():
        if name not in existing:
            raise ZarrLayoutError(f"zarr store {path}: variable {name!r} of the template is missing")
        stored = existing[name]
        if stored.dims != variable.dims:
            raise ZarrLayoutError(f"zarr store {path}: {name!r} has dims {stored.dims}, template has {variable.dims}")
        # Compare stored dtypes: decoding turns an integer array with a _FillValue into floats.
        stored_dtype = stored.encoding.get("dtype", stored.dtype)
        if stored_dtype != variable.dtype:
            raise ZarrLayoutError(f"zarr store {path}: {name!r} is {stored_dtype}, template is {variable.dtype}")
    for dim, size in template.sizes.items():
        if dim != growable and existing.sizes.get(dim) != size:
            raise ZarrLayoutError(
                f"zarr store {path}: dimension {dim!r} has {existing.sizes.get(dim)} entries, template has {size}"
            )


def with_exact_transform(template: xr.Dataset) -> xr.Dataset:
    """Record the GeoBox's affine as a GDAL ``GeoTransform`` on the CRS coordinate.

    Without it, readers re-derive the transform from float coordinates and get a
    pixel size off in the 15th digit, which breaks exact grid alignment.
    """
    geobox = template.odc.geobox
    crs_names = [name for name, coord in template.coords.items() if "crs_wkt" in coord.attrs]
    if geobox is None or not crs_names or not hasattr(geobox, "affine"):
        return template
    a = geobox.affine
    transform = " ".join(repr(float(v)) for v in (a.c, a.a, a.b, a.f, a.d, a.e))
    name = crs_names[0]
    template = template.assign_coords({name: template[name].assign_attrs(GeoTransform=transform)})
    for var in template.data_vars.values():
        if set(geobox.dimensions) <= set(var.dims):
            var.attrs.setdefault("grid_mapping", name)
    # xarray omits grid-mapping targets from per-variable "coordinates"; a global entry
    # keeps the CRS a coordinate for plain ``xr.open_zarr`` (no decode_coords="all" needed).
    template.attrs["coordinates"] = name
    return template


def portable_strings(dataset: xr.Dataset) -> xr.Dataset:
    """Fixed-width numpy strings (band names) as variable-length strings: zarr v3 has no portable
    spec for numpy's ``<U`` type, so other readers might not open it."""
    fixed = {name: var.astype(object) for name, var in dataset.variables.items() if var.dtype.kind == "U"}
    return dataset.assign_coords({n: v for n, v in fixed.items() if n in dataset.coords}).assign(
        {n: v for n, v in fixed.items() if n not in dataset.coords})


def create_store(path: UPath, template: xr.Dataset, *, encoding: dict | None = None) -> None:
    """Write the store's metadata and coordinates once; a compatible existing store is left alone.

    ``encoding`` takes xarray's zarr encoding per variable (``chunks``, ``shards``,
    ``compressors``, ``_FillValue``). Safe when several partitions race to create it:
    the store is built aside and appears complete or not at all (one rename on local
    disk; on object stores the root ``zarr.json`` is uploaded last, and
    ``store_exists`` looks for exactly that object).
    """
    if store_exists(path):
        _check_compatible(path, template)
        return
    template = with_exact_transform(portable_strings(template))
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX) as scratch:
        # On local disk, stage beside the store so the final rename stays on one device.
        staged = temp_sibling(path) if is_local(path) else UPath(scratch) / "store.zarr"
        staged.parent.mkdir(parents=True, exist_ok=True)
        try:
            template.to_zarr(
                staged.path,
                mode="w-",
                compute=False,
                encoding=encoding or {},
                consolidated=False,
                zarr_format=3,
                safe_chunks=False,  # metadata only: the template's dask chunks are never written
            )
            published = _publish(staged, path)
        finally:
            if staged.exists():
                shutil.rmtree(staged.path, ignore_errors=True)
    if not published:
        _check_compatible(path, template)


def _publish(staged: UPath, path: UPath) -> bool:
    """Move a staged store into place; False when another writer published one first."""
    if is_local(path):
        try:
            os.rename(staged.path, path.path)  # replaces only a missing or empty folder
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise
            return False
        return True
    if store_exists(path):
        return False
    files = sorted(p for p in Path(staged.path).rglob("*") if p.is_file())
    root = Path(staged.path) / "zarr.json"
    for file in [f for f in files if f != root] + [root]:
        (path / file.relative_to(staged.path).as_posix()).write_bytes(file.read_bytes())
    return True


def append_along(path: UPath, dim: str, template: xr.Dataset) -> None:
    """Grow the store along ``dim`` by the template's new labels (e.g. a new month); data stays unwritten.

    Appenders on one machine take turns, so labels racing in from several partitions each land
    once. On object stores there is no lock: grow an axis from one run at a time there (the
    Sentinel-2 cube's Icechunk backend commits such changes as transactions instead).
    """
    with local_lock(path):
        existing = open_store(path)
        new_labels = np.setdiff1d(template[dim].values, existing[dim].values)
        if new_labels.size == 0:
            return
        _check_compatible(path, template, growable=dim)
        portable_strings(template.sel({dim: new_labels})).to_zarr(
            **_store_args(path), append_dim=dim, compute=False, consolidated=False, zarr_format=3, safe_chunks=False
        )


def _locate(store_index: np.ndarray, labels: np.ndarray, dim: str, path: UPath) -> slice:
    if labels.size == 0:
        raise ZarrLayoutError(f"zarr store {path}: empty selection along {dim!r}")
    if np.issubdtype(store_index.dtype, np.floating):
        step = abs(float(store_index[1] - store_index[0])) if store_index.size > 1 else 1.0
        start = int(np.argmin(np.abs(store_index - labels[0])))
        matches = abs(store_index[start] - labels[0]) <= step * 1e-6
    else:
        found = np.nonzero(store_index == labels[0])[0]
        start = int(found[0]) if found.size else 0
        matches = found.size > 0
    stop = start + labels.size
    if not matches or stop > store_index.size:
        raise ZarrLayoutError(f"zarr store {path}: labels along {dim!r} starting at {labels[0]!r} are not in the store")
    expected = store_index[start:stop]
    same = (
        np.allclose(expected, labels, rtol=0, atol=abs(float(expected[1] - expected[0])) * 1e-6 if expected.size > 1 else 1e-9)
        if np.issubdtype(store_index.dtype, np.floating)
        else np.array_equal(expected, labels)
    )
    if not same:
        raise ZarrLayoutError(f"zarr store {path}: labels along {dim!r} are not a contiguous run of the store's")
    return slice(start, stop)


_LAYOUTS: OrderedDict[str, tuple[tuple, StoreLayout]] = OrderedDict()  # local stores, newest last
_LAYOUTS_KEPT = 64
_LAYOUTS_LOCK = threading.Lock()  # region writes of one process may run in threads


def _metadata_signature(path: UPath) -> tuple | None:
    """Identity and age of a local store's metadata documents (the group's and its arrays'), or None when
    unreadable: every change zarr or ``append_along`` makes rewrites one of them, or adds a folder."""
    root = path.path
    try:
        folder = os.stat(root)
        documents = [("", os.stat(os.path.join(root, "zarr.json")))]
        with os.scandir(root) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                    try:
                        documents.append((entry.name, os.stat(os.path.join(entry.path, "zarr.json"))))
                    except FileNotFoundError:
                        continue
    except FileNotFoundError:
        return None
    return (folder.st_ino, folder.st_mtime_ns,
            *sorted((name, st.st_ino, st.st_mtime_ns, st.st_size) for name, st in documents))


@dataclass(frozen=True)
class StoreLayout:
    """A store's shape as its zarr metadata states it: enough to place and check a region
    without decoding the whole dataset (which reads and indexes every coordinate).

    On local disk ``read`` hands back the layout it read before while the metadata documents are unchanged
    (same inode, mtime and size), so a store filled region by region reads its metadata and coordinates once,
    not once per region (about 5 ms of the 16.7 MB region benchmarks/io_managers.py writes)."""

    arrays: dict[str, zarr.Array]
    dims: dict[str, tuple[str, ...]]  # per array
    units: dict[str, dict[str, int]]  # per array: dimension -> write unit (shard, else chunk)
    data_vars: tuple[str, ...]
    sizes: dict[str, int]  # the dimensions the data variables span (what a region is cut from)
    _memo: dict = field(default_factory=dict, compare=False, repr=False)  # decoded labels, writable arrays

    @classmethod
    def read(cls, path: UPath) -> StoreLayout:
        signature = _metadata_signature(path) if is_local(path) else None
        key = os.path.abspath(path.path) if signature is not None else None
        with _LAYOUTS_LOCK:
            known = _LAYOUTS.get(key) if key is not None else None
            if known is not None and known[0] == signature:
                _LAYOUTS.move_to_end(key)
                return known[1]
        layout = cls._read(path)
        if key is not None and "/" not in "".join(layout.arrays):
            with _LAYOUTS_LOCK:
                _LAYOUTS[key] = (signature, layout)
                while len(_LAYOUTS) > _LAYOUTS_KEPT:
                    _LAYOUTS.popitem(last=False)
        return layout

    @classmethod
    def _read(cls, path: UPath) -> StoreLayout:
        group = _open_group(path)
        arrays = dict(group.arrays())
        dims = {name: tuple(a.metadata.dimension_names or ()) for name, a in arrays.items()}
        units = {name: dict(zip(dims[name], a.shards or a.chunks, strict=False)) for name, a in arrays.items()}
        coordinates = {dim for names in dims.values() for dim in names}
        for attrs in [group.attrs, *(a.attrs for a in arrays.values())]:
            coordinates |= set(str(attrs.get("coordinates", "")).split())
        data_vars = tuple(name for name in arrays if name not in coordinates)
        sizes = {dim: size for name in data_vars for dim, size in zip(dims[name], arrays[name].shape, strict=True)}
        return cls(arrays, dims, units, data_vars, sizes)

    def labels(self, dim: str) -> np.ndarray:
        """A coordinate's values decoded as xarray would (CF times become datetime64); read once per layout."""
        key = ("labels", dim)
        if key not in self._memo:
            array = self.arrays[dim]
            raw = xr.Variable((dim,), array[...], dict(array.attrs))
            labels = xr.conventions.decode_cf_variable(dim, raw).values
            labels.flags.writeable = False
            self._memo[key] = labels
        return self._memo[key]

    def writable(self, path: UPath, codec_pipeline: str) -> dict[str, zarr.Array]:
        """The arrays opened for writing with the named pipeline (every chunk written, all-fill ones included:
        a region is complete when all its objects exist); opened once per layout and pipeline."""
        key = ("writable", str(path), codec_pipeline)
        if key not in self._memo:
            with writing_with(codec_pipeline, path):
                arrays = dict(_open_group(path, mode="r+").arrays())
                self._memo[key] = {name: a.with_config({"write_empty_chunks": True}) for name, a in arrays.items()}
        return self._memo[key]


def region_of(path: UPath, dataset: xr.Dataset, layout: StoreLayout | None = None) -> dict[str, slice]:
    """The integer region the dataset's coordinate labels select, checked against whole write units."""
    layout = StoreLayout.read(path) if layout is None else layout
    sizes = layout.sizes
    region = {}
    for dim in dataset.dims:
        if dim in dataset.coords:
            region[dim] = _locate(layout.labels(dim), dataset[dim].values, dim, path)
        elif dataset.sizes[dim] == sizes.get(dim):
            region[dim] = slice(0, sizes[dim])
        else:
            raise ZarrLayoutError(f"zarr store {path}: {dim!r} has no coordinate to place a partial region")
    for name in dataset.data_vars:
        for dim, unit in layout.units.get(name, {}).items():
            span = region.get(dim)
            if span is None:
                continue
            if span.start % unit or (span.stop % unit and span.stop != sizes[dim]):
                raise ZarrLayoutError(
                    f"zarr store {path}: region {dim}[{span.start}:{span.stop}] of {name!r} does not cover whole "
                    f"write units of {unit}; another partition could share them"
                )
    return region


def _marker(path: UPath, region: dict[str, slice], sizes: dict[str, int]) -> UPath:
    """Completion markers live beside the store (zarr warns about foreign objects inside it)."""
    full = {dim: region.get(dim, slice(0, size)) for dim, size in sizes.items()}
    name = "_".join(f"{dim}{span.start}-{span.stop}" for dim, span in sorted(full.items()))
    return path.parent / f".{path.name}.regions" / f"{name}.json"


def write_encoded(arrays: dict[str, zarr.Array], dataset: xr.Dataset, region: dict[str, slice], where: str, *,
                  whole_shards: bool = False) -> None:
    """Write the dataset's data variables as they are stored (already CF-encoded: the stored dtype, fill for
    missing), straight into the arrays at ``region``: no decoded float copy of the data is ever made.
    ``whole_shards``: shards the region covers whole are encoded by ``zarr_shards`` where it can."""
    for name, variable in dataset.data_vars.items():
        array = arrays.get(name)
        if array is None:
            raise ZarrLayoutError(f"zarr store {where}: has no array {name!r} to write")
        if variable.dtype != array.dtype:
            raise ZarrLayoutError(f"zarr store {where}: {name!r} is stored as {array.dtype}; an encoded write "
                                  f"must bring that dtype, not {variable.dtype}")
        dims = tuple(array.metadata.dimension_names or variable.dims)
        selection = tuple(region.get(dim, slice(0, size)) for dim, size in zip(dims, array.shape, strict=True))
        values = variable.transpose(*dims).values
        if not (whole_shards and write_whole_shards(array, values, selection)):
            # every chunk written, all-fill ones included: a region is complete when all its objects exist
            array.with_config({"write_empty_chunks": True})[selection] = values


def _cf_fill(array: zarr.Array):
    """The CF ``_FillValue`` xarray recorded for an array (base64 of the value's bytes for floats), or None."""
    value = array.attrs.get("_FillValue")
    if isinstance(value, str):  # xarray writes a float fill as the base64 of its little-endian float64
        return struct.unpack("<d", base64.standard_b64decode(value))[0]
    return value


def stored_as_is(dataset: xr.Dataset, layout: StoreLayout, region_dims: set[str]) -> bool:
    """Whether CF encoding would leave the dataset's values unchanged, so they can be written as they are: every
    data variable in memory (not lazy), numeric in its stored dtype with no scale or offset, a float one with no fill value
    but NaN, and no coordinate beyond the indexes that place the region (those xarray would write too)."""
    for name, variable in dataset.data_vars.items():
        array = layout.arrays.get(name)
        if array is None or variable.dtype != array.dtype or variable.dtype.kind not in "fiu":
            return False
        if variable.chunks is not None:  # lazy: xarray writes it chunk by chunk as computed, never whole in memory
            return False
        if {"scale_factor", "add_offset"} & set(array.attrs):
            return False
        fill = _cf_fill(array)
        if variable.dtype.kind == "f" and fill is not None and not np.isnan(fill):
            return False
    return not any(name not in dataset.indexes and set(coord.dims) & region_dims for name, coord in dataset.coords.items())


def write_region(path: UPath, dataset: xr.Dataset, layout: StoreLayout | None = None, *,
                 codec_pipeline: str | None = None, encoded: bool | None = None) -> dict[str, slice]:
    """Write ``dataset`` where its coordinates place it; idempotent, and marked complete only at the end.
    ``codec_pipeline``: a name from ``CODEC_PIPELINES`` (default: see ``codec_pipeline_name``).
    ``encoded``: the data variables hold stored values (see ``write_encoded``); coordinates are only placed.
    None: written as stored whenever CF encoding would not change them (``stored_as_is``), else through
    xarray; both store the same bytes, the first without xarray's copies (benchmarks/io_managers.py)."""
    codec_pipeline = codec_pipeline_name(codec_pipeline)  # refused before anything changes
    layout = StoreLayout.read(path) if layout is None else layout
    region = region_of(path, dataset, layout)
    if encoded is None:
        encoded = stored_as_is(dataset, layout, set(region))
    marker = _marker(path, region, layout.sizes)
    if marker.exists():
        marker.unlink()
    if encoded:
        write_encoded(layout.writable(path, codec_pipeline), dataset, region, str(path),
                      whole_shards=codec_pipeline == "shards" and is_local(path))
        return _marked(marker, region)
    unrelated = [name for name, var in dataset.variables.items() if not set(var.dims) & set(region)]
    with writing_with(codec_pipeline, path):
        portable_strings(dataset.drop_vars(unrelated)).to_zarr(
            **_store_args(path), region=region, mode="r+", consolidated=False, zarr_format=3, write_empty_chunks=True
        )
    return _marked(marker, region)


def _marked(marker: UPath, region: dict[str, slice]) -> dict[str, slice]:
    # Atomic against a killed writer; no fsync, as zarr does not sync the chunks it marks either.
    atomic_write_text(marker, json.dumps({dim: [s.start, s.stop] for dim, s in region.items()}), durable=False)
    return region


def _unit_keys(name: str, dims: tuple[str, ...], units: dict[str, int], region: dict[str, slice], sizes: dict[str, int]) -> set[str]:
    ranges = []
    for dim in dims:
        span = region.get(dim, slice(0, sizes[dim]))
        unit = units[dim]
        ranges.append(range(span.start // unit, math.ceil(span.stop / unit)))
    keys = {""}
    for axis in ranges:
        keys = {f"{key}/{index}" for key in keys for index in axis}
    return {f"{name}/c{key}" for key in keys}


def region_status(path: UPath, region: dict[str, slice], variables: list[str] | None = None,
                  layout: StoreLayout | None = None) -> RegionStatus:
    """How many of the region's stored objects exist, and whether its completion marker is there."""
    layout = StoreLayout.read(path) if layout is None else layout
    sizes = layout.sizes
    expected = present = stored_bytes = 0
    fs = path.fs
    root = path.path.rstrip("/")
    names = variables or [n for n in layout.data_vars if set(layout.dims[n]) & set(region)]
    for name in names:
        keys = _unit_keys(name, layout.dims[name], layout.units[name], region, sizes)
        # List only below the keys' common folder: a day of a 15,000-day store lists its own chunks.
        folder = f"{root}/{os.path.commonprefix(sorted(keys)).rsplit('/', 1)[0]}"  # noqa: RUF071 (a string prefix on purpose: the folder is cut at its last '/')
        found = fs.find(folder, detail=True) if fs.exists(folder) else {}
        found_sizes = {p[len(root) + 1 :]: int(info.get("size") or 0) for p, info in found.items()}
        expected += len(keys)
        present += len(keys & found_sizes.keys())
        stored_bytes += sum(found_sizes[key] for key in keys & found_sizes.keys())
    marked = _marker(path, region, sizes).exists()
    return RegionStatus(expected=expected, present=present, marked=marked, stored_bytes=stored_bytes)


# Reading: a reader takes a region only when its completion marker is there.


class IncompleteRegionError(InputError):
    """A region a reader asked for has no completion marker: its writer has not finished, or was killed.

    Reading it could mix old and new chunks, so the read is refused; re-materializing the named
    partitions repairs it."""


def marked_regions(path: UPath) -> set[str]:
    """The names of the completion markers beside the store (one listing, however many regions)."""
    folder = path.parent / f".{path.name}.regions"
    try:
        return {UPath(entry).name for entry in path.fs.ls(folder.path, detail=False)}
    except FileNotFoundError:
        return set()


def regions_along(path: UPath, dim: str, labels: dict[str, np.ndarray], layout: StoreLayout | None = None) -> dict[str, dict[str, slice]]:
    """Per name (a partition key), the region its coordinate labels along ``dim`` select (the whole store elsewhere)."""
    layout = StoreLayout.read(path) if layout is None else layout
    index = layout.labels(dim)
    return {name: {dim: _locate(index, np.asarray(values), dim, path)} for name, values in labels.items()}


def require_complete(path: UPath, regions: dict[str, dict[str, slice]], *, what: str = "partition",
                     layout: StoreLayout | None = None) -> None:
    """Refuse to read unless every named region carries its completion marker.

    ``regions`` maps a name (the partition key) to the region it owns; an empty region is the whole
    store. Raises ``IncompleteRegionError`` naming every region without a marker."""
    if not regions:
        return
    layout = StoreLayout.read(path) if layout is None else layout
    markers = {name: _marker(path, region, layout.sizes) for name, region in regions.items()}
    if len(markers) <= 8:  # a few lookups cost less than listing every marker of a long store
        missing = [name for name, marker in markers.items() if not marker.exists()]
    else:
        present = marked_regions(path)
        missing = [name for name, marker in markers.items() if marker.name not in present]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise IncompleteRegionError(
            f"zarr store {path}: {what} {shown} {'is' if len(missing) == 1 else 'are'} not completely written "
            "(no completion marker: the write was interrupted or is still running); re-materialize "
            f"{'it' if len(missing) == 1 else 'them'} before reading"
        )
