"""Packed tensors: many fixed-shape samples in one data file plus a JSON index.

One tiny file per sample (the seed's ``features.pt``/``labels.pt`` per tile)
costs an open, a stat and a read per sample. Here every sample is one
fixed-size *record* (all its fields back to back, e.g. features, labels, valid
mask), records are packed into one ``tensors-<version>.bin`` file, and
``index.json`` describes the layout (field dtypes, shapes, byte offsets), one
row per record (any JSON columns plus ``offset`` and a ``crc32`` of the
record), and the data file's size and SHA-256. So:

* ``np.memmap(data, dtype=index.record_dtype)`` or ``torch.from_file`` maps
  the file and reading sample ``i`` touches only its ``record_bytes`` bytes;
* publishing is atomic: the data file gets a fresh name, is written completely
  and only then is the index (the single commit point) replaced, so a reader
  sees the old index with its old data file or the new pair, never a mix. Data
  files no index names are removed after the publish, except those of writers
  still running: two writers of one partition each build their own data file and
  the last index published wins (locally each holds a lock on its file until it
  has published; on object stores, unpublished files are kept until they are
  ``STALE_AFTER_S`` old).

A writer that cannot hold all its samples (tens of thousands of 120 kB tiles)
appends them to a ``RecordSpool``, an anonymous temporary file in the record
layout, and hands the spool over in place of the arrays: memory stays at one
batch of records however many are written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import uuid
import zlib
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from upath import UPath

from gnt_assets.core.atomic import atomic_open, folder_lock, is_local, remove_if_unused, remove_stale_temps
from gnt_assets.core.errors import InputError

FORMAT = "gnt-packed-tensors/1"
INDEX_NAME = "index.json"
DATA_PREFIX = "tensors-"
RECORD_ALIGNMENT = 64  # every record (and so every field) starts on a 64-byte boundary
WRITE_BATCH = 128


class PackedTensorError(InputError, RuntimeError):
    """A packed folder that is missing, truncated, or disagrees with its index."""


@dataclass(frozen=True)
class TensorField:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * np.prod(self.shape, dtype=np.int64))


def record_dtype(fields: Sequence[TensorField]) -> np.dtype:
    """The numpy structured dtype of one record: fields in order, each 64-byte aligned."""
    offsets, offset = [], 0
    for field in fields:
        offsets.append(offset)
        offset += -(-field.nbytes // RECORD_ALIGNMENT) * RECORD_ALIGNMENT
    return np.dtype(
        {
            "names": [f.name for f in fields],
            "formats": [(np.dtype(f.dtype), f.shape) for f in fields],
            "offsets": offsets,
            "itemsize": max(offset, RECORD_ALIGNMENT),
        }
    )


@dataclass(frozen=True)
class PackedIndex:
    """The parsed ``index.json``: layout, per-record rows and the data file's identity."""

    folder: UPath
    fields: tuple[TensorField, ...]
    rows: dict[str, list]
    data_file: str
    data_bytes: int
    sha256: str
    attrs: dict[str, Any]

    @property
    def count(self) -> int:
        return len(self.rows["offset"])

    @property
    def record_dtype(self) -> np.dtype:
        return record_dtype(self.fields)

    @property
    def data_path(self) -> UPath:
        return self.folder / self.data_file

    def field(self, name: str) -> TensorField:
        for field in self.fields:
            if field.name == name:
                return field
        raise KeyError(f"{self.folder}: no field {name!r}; fields are {[f.name for f in self.fields]}")

    def memmap(self) -> np.memmap:
        """All records as a read-only structured memmap (local folders only); nothing is read yet."""
        if not is_local(self.data_path):
            raise PackedTensorError(f"{self.data_path}: np.memmap needs a local file; use read_records for {self.folder.protocol}://")
        if self.count == 0:
            return np.zeros(0, self.record_dtype)  # np.memmap refuses empty files
        return np.memmap(self.data_path.path, dtype=self.record_dtype, mode="r", shape=(self.count,))

    def torch_records(self):
        """The data file as a ``(count, record_bytes)`` uint8 torch tensor via ``torch.from_file``
        (private mapping: pages are read on access, writes never reach the file)."""
        import torch

        flat = torch.from_file(self.data_path.path, shared=False, size=self.data_bytes, dtype=torch.uint8)
        return flat.view(self.count, self.record_dtype.itemsize)

    def read_records(self, positions: Sequence[int]) -> np.ndarray:
        """Records by position with one ranged read each; works on any fsspec file system."""
        itemsize = self.record_dtype.itemsize
        out = np.empty(len(positions), self.record_dtype)
        fs = self.data_path.fs
        for i, position in enumerate(positions):
            start = int(self.rows["offset"][position])
            raw = fs.cat_file(self.data_path.path, start=start, end=start + itemsize)
            if len(raw) != itemsize:
                raise PackedTensorError(f"{self.data_path}: record {position} is truncated ({len(raw)} of {itemsize} bytes)")
            out[i : i + 1] = np.frombuffer(raw, self.record_dtype, count=1)
        return out


class RecordSpool:
    """Records appended one at a time to an anonymous temporary file (gone when the spool is), read
    back in batches: ``write_packed`` takes one in place of the arrays. Memory holds one batch."""

    def __init__(self, fields: Sequence[TensorField], directory: str | None = None) -> None:
        self.fields = tuple(fields)
        self.dtype = record_dtype(self.fields)
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (lives as long as the spool; deleted with it)
        self._pending = np.zeros(WRITE_BATCH, self.dtype)
        self._filled = 0
        self._written = 0

    def __len__(self) -> int:
        return self._written + self._filled

    def append(self, values: Mapping[str, np.ndarray]) -> None:
        """One record, a value of each field's shape (cast to its dtype)."""
        record = self._pending[self._filled]
        for field in self.fields:
            record[field.name] = values[field.name]
        self._filled += 1
        if self._filled == WRITE_BATCH:
            self._flush()

    def _flush(self) -> None:
        self._file.seek(self._written * self.dtype.itemsize)
        self._file.write(memoryview(self._pending[: self._filled].view(np.uint8)))
        self._written += self._filled
        self._filled = 0

    def batches(self, size: int = WRITE_BATCH) -> Iterator[np.ndarray]:
        """Every record in order, ``size`` at a time, each batch a fresh array."""
        self._flush()
        for start in range(0, len(self), size):
            yield self._read(start, min(size, len(self) - start))

    def record(self, position: int) -> np.ndarray:
        self._flush()
        if not 0 <= position < len(self):
            raise IndexError(f"record {position} of a spool of {len(self)}")
        return self._read(position, 1)[0]

    def _read(self, start: int, count: int) -> np.ndarray:
        out = np.empty(count, self.dtype)
        self._file.seek(start * self.dtype.itemsize)
        if self._file.readinto(memoryview(out.view(np.uint8))) != out.nbytes:
            raise PackedTensorError(f"spool: records {start}..{start + count} are truncated")
        return out


def write_packed(
    folder: UPath,
    fields: Sequence[TensorField],
    arrays: Mapping[str, np.ndarray] | RecordSpool,
    rows: Mapping[str, Sequence],
    attrs: Mapping[str, Any] | None = None,
) -> PackedIndex:
    """Pack ``arrays`` (each ``(N, *field.shape)`` of exactly ``field.dtype``, or a ``RecordSpool`` of
    these fields) and publish atomically."""
    fields = tuple(fields)
    dtype = record_dtype(fields)
    count = _validate(folder, fields, arrays, rows)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = f"{DATA_PREFIX}{uuid.uuid4().hex[:16]}.bin"
    digest = hashlib.sha256()
    crcs: list[int] = []

    def checksum(raw: memoryview, records: int) -> None:
        digest.update(raw)
        crcs.extend(zlib.crc32(raw[i * dtype.itemsize : (i + 1) * dtype.itemsize]) for i in range(records))

    with contextlib.ExitStack() as held:  # our data file's lock, until the index naming it is published
        # Checksums run in a thread beside the write (both release the GIL), one batch at a time, in order.
        with atomic_open(folder / data_file, "wb", hold=held) as handle, ThreadPoolExecutor(max_workers=1) as hasher:
            pending = None
            batches = arrays.batches() if isinstance(arrays, RecordSpool) else _array_batches(fields, dtype, arrays, count)
            for batch in batches:
                raw = memoryview(batch.view(np.uint8).reshape(-1))
                if pending is not None:
                    pending.result()
                pending = hasher.submit(checksum, raw, len(batch))
                handle.write(raw)
            if pending is not None:
                pending.result()
        index = PackedIndex(
            folder=folder,
            fields=fields,
            rows={**{k: _plain(v) for k, v in rows.items()}, "offset": [i * dtype.itemsize for i in range(count)], "crc32": crcs},
            data_file=data_file,
            data_bytes=count * dtype.itemsize,
            sha256=digest.hexdigest(),
            attrs=dict(attrs or {}),
        )
        with folder_lock(folder):  # publish and clean-up of one partition take turns
            previous = _published_data_file(folder)
            with atomic_open(folder / INDEX_NAME, "wb") as handle:
                handle.write(json.dumps(_index_json(index)).encode("utf-8"))
            remove_unreferenced(folder, superseded=previous)
    return index


def _array_batches(fields: tuple[TensorField, ...], dtype: np.dtype, arrays: Mapping[str, np.ndarray], count: int) -> Iterator[np.ndarray]:
    for start in range(0, count, WRITE_BATCH):
        stop = min(start + WRITE_BATCH, count)
        batch = np.zeros(stop - start, dtype)
        for field in fields:
            batch[field.name] = arrays[field.name][start:stop]
        yield batch


def _published_data_file(folder: UPath) -> str | None:
    try:
        return read_index(folder).data_file
    except PackedTensorError:
        return None


def remove_unreferenced(folder: UPath, superseded: str | None = None) -> list[UPath]:
    """Delete data files no index names and no live writer holds, and crashed writers' temporaries;
    returns what went. ``superseded``, the file the index named before this publish, goes at once
    (on object stores, where liveness is judged by age, it is the one file known to be unused)."""
    removed = remove_stale_temps(folder)
    current = _published_data_file(folder)
    for child in folder.iterdir():
        if not child.name.startswith(DATA_PREFIX) or child.name == current:
            continue
        if child.name == superseded and not is_local(child):
            with contextlib.suppress(FileNotFoundError):
                child.unlink()
            removed.append(child)
        elif remove_if_unused(child):
            removed.append(child)
    return removed


def read_index(folder: UPath) -> PackedIndex:
    path = folder / INDEX_NAME
    try:
        with path.open("rb") as handle:
            raw = json.loads(handle.read())
    except FileNotFoundError:
        raise PackedTensorError(f"{folder}: no {INDEX_NAME}; the partition was never written (or was removed)") from None
    except json.JSONDecodeError as error:
        raise PackedTensorError(f"{path}: not valid JSON ({error})") from None
    if raw.get("format") != FORMAT:
        raise PackedTensorError(f"{path}: format {raw.get('format')!r} is not {FORMAT}")
    return PackedIndex(
        folder=folder,
        fields=tuple(TensorField(f["name"], f["dtype"], tuple(f["shape"])) for f in raw["fields"]),
        rows=raw["rows"],
        data_file=raw["data_file"],
        data_bytes=int(raw["data_bytes"]),
        sha256=raw["sha256"],
        attrs=raw.get("attrs", {}),
    )


def open_packed(folder: UPath) -> PackedIndex:
    """The published index, after checking its data file exists with the recorded size.

    A writer may swap in a new version between our reading the index and the data
    file; then the index is read once more and names the new file.
    """
    for attempt in range(2):
        index = read_index(folder)
        try:
            size = int(index.data_path.fs.size(index.data_path.path))
        except FileNotFoundError:
            if attempt == 0:
                continue
            raise PackedTensorError(f"{folder}: index names {index.data_file}, which does not exist") from None
        if size != index.data_bytes:
            raise PackedTensorError(
                f"{index.data_path}: {size} bytes on disk but the index records {index.data_bytes} "
                f"({index.count} records of {index.record_dtype.itemsize}); the file is truncated or foreign"
            )
        return index
    raise AssertionError("unreachable")


def verify_packed(index: PackedIndex) -> list[str]:
    """Problems found by reading the whole data file: size, SHA-256 and each record's CRC-32."""
    itemsize = index.record_dtype.itemsize
    digest = hashlib.sha256()
    problems: list[str] = []
    position = 0
    try:
        handle = index.data_path.open("rb")
    except FileNotFoundError:
        return [f"{index.data_path}: missing"]
    with handle:
        while chunk := handle.read(itemsize * WRITE_BATCH):
            digest.update(chunk)
            for start in range(0, len(chunk) - itemsize + 1, itemsize):
                if position < index.count and zlib.crc32(chunk[start : start + itemsize]) != index.rows["crc32"][position]:
                    problems.append(f"{index.data_path}: record {position} ({_describe_row(index, position)}) fails its CRC-32")
                position += 1
    if position * itemsize != index.data_bytes:
        problems.append(f"{index.data_path}: holds {position} whole records, the index records {index.count}")
    elif digest.hexdigest() != index.sha256:
        problems.append(f"{index.data_path}: SHA-256 differs from the index")
    return problems


def _describe_row(index: PackedIndex, position: int) -> str:
    return ", ".join(f"{k}={v[position]}" for k, v in index.rows.items() if k not in ("offset", "crc32"))


def _validate(folder: UPath, fields: tuple[TensorField, ...], arrays: Mapping[str, np.ndarray] | RecordSpool, rows: Mapping[str, Sequence]) -> int:
    names = [f.name for f in fields]
    reserved = {"offset", "crc32"} & set(rows)
    if reserved:
        raise PackedTensorError(f"{folder}: index columns {sorted(reserved)} are written by the format itself")
    if isinstance(arrays, RecordSpool):
        if arrays.fields != fields:
            raise PackedTensorError(f"{folder}: the spool's fields {[f.name for f in arrays.fields]} are not {names}")
        counts = {len(arrays)} | {len(column) for column in rows.values()}
        if len(counts) > 1:
            raise PackedTensorError(f"{folder}: spooled records and index rows disagree on the number of records: {sorted(counts)}")
        return counts.pop()
    if set(arrays) != set(names):
        raise PackedTensorError(f"{folder}: arrays {sorted(arrays)} do not match fields {names}")
    counts = {len(arrays[name]) for name in names} | {len(column) for column in rows.values()}
    if len(counts) > 1:
        raise PackedTensorError(f"{folder}: arrays and index rows disagree on the number of records: {sorted(counts)}")
    for field in fields:
        array = arrays[field.name]
        if array.dtype != np.dtype(field.dtype) or tuple(array.shape[1:]) != field.shape:
            raise PackedTensorError(
                f"{folder}: field {field.name!r} must be {field.dtype} (N, {', '.join(map(str, field.shape))}), "
                f"got {array.dtype} {array.shape}"
            )
    return counts.pop() if counts else 0


def _plain(values: Sequence) -> list:
    return [v.item() if isinstance(v, np.generic) else v for v in values]


def _index_json(index: PackedIndex) -> dict:
    return {
        "format": FORMAT,
        "count": index.count,
        "record_bytes": index.record_dtype.itemsize,
        "fields": [
            {"name": f.name, "dtype": f.dtype, "shape": list(f.shape), "offset": index.record_dtype.fields[f.name][1]}
            for f in index.fields
        ],
        "data_file": index.data_file,
        "data_bytes": index.data_bytes,
        "sha256": index.sha256,
        "attrs": index.attrs,
        "rows": index.rows,
    }


@dataclass(frozen=True)
class TensorPack:
    """What an asset hands the mmap IO manager: field layout, one array per field (or a spool of
    the records), index rows, attrs."""

    fields: tuple[TensorField, ...]
    arrays: Mapping[str, np.ndarray] | RecordSpool
    rows: Mapping[str, Sequence]
    attrs: Mapping[str, Any]

    def record(self, position: int) -> Mapping[str, np.ndarray]:
        """Each field's value in record ``position``."""
        if isinstance(self.arrays, RecordSpool):
            record = self.arrays.record(position)
            return {field.name: record[field.name] for field in self.fields}
        return {field.name: self.arrays[field.name][position] for field in self.fields}

    def write(self, folder: UPath) -> PackedIndex:
        return write_packed(folder, self.fields, self.arrays, self.rows, self.attrs)
