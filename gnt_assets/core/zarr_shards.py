"""Whole zarr v3 shards encoded on all cores and written one object each, byte for byte what zarr-python writes.

zarr-python writes a shard through its partial-write path even when a region covers it whole: it reads the
shard back if one is stored, copies each inner chunk into a fresh fill-valued buffer, encodes the chunks
on about one core, then concatenates them before the write (benchmarks/io_managers.py). Here each inner
chunk is cut from the region with one copy into a reused buffer and compressed on a thread pool; the
writing thread writes each chunk as soon as it is encoded, while the pool encodes the ones after it (and
the next shard's), so the write overlaps the compression instead of following it. Uncompressed, the pool
copies a shard's second half of chunks while the writing thread copies and writes the first. The shard is in zarr's
own layout: chunks in Morton order, the index of (offset, length) pairs as little-endian uint64 with its
crc32c, at the end or the start as the metadata says. Only the codecs whose output is spelled out here are
taken (bytes, optionally zstd, inside a sharding codec with the default index codecs); anything else, and
object stores, return False so the caller writes through zarr. The Morton order is zarr's own
(``zarr.core.indexing.morton_order_iter``, a private function): core_tests/test_zarr_regions.py compares
the objects with zarr-python's byte for byte, so a change of zarr's layout fails there.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import uuid
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import google_crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.core.indexing import morton_order_iter

_EMPTY = np.uint64(2**64 - 1)  # the index entry of a chunk that is not stored


@dataclass(frozen=True)
class ShardPlan:
    chunk: tuple[int, ...]  # inner chunk shape
    shard: tuple[int, ...]
    dtype: np.dtype  # as stored (little-endian)
    compressor: numcodecs.abc.Codec | None  # what zarr's ZstdCodec runs, with the same settings
    index_at_start: bool


def shard_plan(array: zarr.Array) -> ShardPlan | None:
    """How to encode the array's shards here, or None when its codecs are not ones this module reproduces."""
    codecs = array.metadata.codecs if array.metadata.zarr_format == 3 else ()
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec) or array.shards is None:
        return None
    sharding = codecs[0]
    index = sharding.index_codecs
    if (len(index) != 2 or not isinstance(index[0], BytesCodec) or index[0].endian is None
            or index[0].endian.value != "little" or not isinstance(index[1], Crc32cCodec)):
        return None
    inner = sharding.codecs
    if not inner or not isinstance(inner[0], BytesCodec) or len(inner) > 2:
        return None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or (dtype.itemsize > 1 and (inner[0].endian is None or inner[0].endian.value != "little")):
        return None
    compressor = None
    if len(inner) == 2:
        if not isinstance(inner[1], ZstdCodec):
            return None
        compressor = numcodecs.Zstd(level=inner[1].level, checksum=inner[1].checksum)
    return ShardPlan(tuple(sharding.chunk_shape), tuple(array.shards), dtype.newbyteorder("<"), compressor,
                     sharding.index_location == ShardingCodecIndexLocation.start)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="zarr-shards")


# A forked child inherits the pool without its threads, and would wait forever on work none of them runs.
os.register_at_fork(after_in_child=_pool.cache_clear)


def write_whole_shards(array: zarr.Array, values: np.ndarray, selection: tuple[slice, ...]) -> bool:
    """Write ``values`` at ``selection`` (whole shards, in the array's dimension order; a region reaching the
    array's end may end inside its last shards) as encoded shards; False, with nothing written, when this
    array or selection needs zarr's own writer."""
    plan = shard_plan(array)
    store = array.store_path.store
    if plan is None or not isinstance(store, zarr.storage.LocalStore) or values.dtype != array.dtype:
        return False
    shape = array.shape
    if any(s.start % n or (s.stop % n and s.stop != size) for s, n, size in zip(selection, plan.shard, shape, strict=True)) or any(
            n % c for n, c in zip(plan.shard, plan.chunk, strict=True)):
        return False
    grid = [range(s.start // n, math.ceil(s.stop / n)) for s, n in zip(selection, plan.shard, strict=True)]
    per_shard = tuple(n // c for n, c in zip(plan.shard, plan.chunk, strict=True))
    order = list(morton_order_iter(per_shard))
    fill = np.asarray(array.fill_value, dtype=plan.dtype)
    root = Path(store.root) / array.store_path.path
    shards = list(itertools.product(*grid))
    nbytes = math.prod(plan.shard) * plan.dtype.itemsize
    with _scratch(nbytes) as first, _scratch(nbytes if len(shards) > 1 else 0) as second:
        pending, futures = None, []  # pending: the shard whose chunks the pool encodes while the one before it is written
        try:
            for number, coords in enumerate([*shards, None]):
                if coords is not None:
                    buffer = (first, second)[number % 2].view(plan.dtype).reshape(len(order), *plan.chunk)
                    futures = _encode_shard(values, selection, coords, buffer, order, plan, shape, fill)
                if pending is not None:
                    _write_shard(root / array.metadata.encode_chunk_key(pending[0]), *pending[1:], order, per_shard, plan)
                pending = (coords, futures, buffer) if coords is not None else None
        except BaseException:  # no pool task may go on filling a buffer handed back for reuse
            wait([getattr(f, "future", f) for f in [*futures, *(pending[1] if pending else ())] if f is not None])
            raise
    return True


def _encode_shard(values: np.ndarray, selection: tuple[slice, ...], coords: tuple[int, ...], buffer: np.ndarray,
                  order: list[tuple[int, ...]], plan: ShardPlan, shape: tuple[int, ...], fill: np.ndarray) -> list:
    """The shard's chunks in Morton order, each copied into its place in ``buffer`` and encoded (on the pool when
    compressed); None for a chunk wholly past the array's end, which zarr does not store either."""
    windows = []
    for inner in order:
        # where the chunk lies in the array, cut at its end: zarr stores edge chunks whole, fill beyond
        starts = [c * n + i * m for c, n, i, m in zip(coords, plan.shard, inner, plan.chunk, strict=True)]
        stops = [min(start + m, size) for start, m, size in zip(starts, plan.chunk, shape, strict=True)]
        windows.append(None if any(start >= stop for start, stop in zip(starts, stops, strict=True)) else
                       tuple(slice(start - s.start, stop - s.start) for start, stop, s in zip(starts, stops, selection, strict=True)))
    if plan.compressor is None and None not in windows:
        # the second half copied by the pool while this thread copies the first and writes it
        half = (len(order) + 1) // 2
        second = _Stealable(_copied, values, windows, buffer, range(half, len(order)), plan, fill)
        return [_done(_copied(values, windows, buffer, range(half), plan, fill)), second]
    if plan.compressor is None:
        return [None if w is None else _done(_encoded_chunk(values, w, buffer[k], plan, fill)) for k, w in enumerate(windows)]
    return [None if w is None else _pool().submit(_encoded_chunk, values, w, buffer[k], plan, fill) for k, w in enumerate(windows)]


def _copied(values: np.ndarray, windows: list, buffer: np.ndarray, chunks: range, plan: ShardPlan, fill: np.ndarray):
    """Uncompressed chunks copied into their places in ``buffer``, where they lie end to end: their bytes as one piece."""
    for k in chunks:
        _encoded_chunk(values, windows[k], buffer[k], plan, fill)
    return memoryview(buffer[chunks.start:chunks.stop].reshape(-1)).cast("B")


class _Stealable:
    """A pool task that the thread wanting its result runs itself when no pool thread has started it yet (a busy
    machine), instead of waiting for one to be scheduled."""

    def __init__(self, task, *args):
        self.task, self.args = task, args
        self.future = _pool().submit(task, *args)

    def result(self):
        return self.task(*self.args) if self.future.cancel() else self.future.result()


def _done(result) -> Future:
    """A result computed right here (uncompressed copies: a hand-over to a thread per chunk cost more than the copy
    on a busy machine, each waiting for the thread to be scheduled), as a finished future."""
    future = Future()
    future.set_result(result)
    return future


_SPARE: list[np.ndarray] = []  # scratch buffers already paged in, kept for the next shards
_SPARE_LOCK = threading.Lock()
_SPARE_KEPT = 4


@contextmanager
def _scratch(nbytes: int):
    """A byte buffer of at least ``nbytes`` whose pages are already mapped: a fresh 16 MB allocation costs
    the kernel about 25 ms of first-touch page faults on this VM, as much as copying and writing it."""
    if not nbytes:
        yield np.empty(0, np.uint8)
        return
    with _SPARE_LOCK:
        fitting = next((k for k, spare in enumerate(_SPARE) if spare.size >= nbytes), None)
        found = _SPARE.pop(fitting) if fitting is not None else None
    buffer = found if found is not None else np.empty(nbytes, np.uint8)
    try:
        yield buffer[:nbytes]
    finally:
        with _SPARE_LOCK:
            if len(_SPARE) < _SPARE_KEPT and buffer.size <= _SCRATCH_LARGEST:
                _SPARE.append(buffer)


_SCRATCH_LARGEST = 256 * 2**20


def _encoded_chunk(values: np.ndarray, window: tuple[slice, ...], into: np.ndarray, plan: ShardPlan, fill: np.ndarray):
    part = values[window]
    if part.shape == into.shape:
        np.copyto(into, part)  # the one copy (numpy drops the GIL for it)
    else:
        into.fill(fill)
        into[tuple(slice(0, n) for n in part.shape)] = part
    return memoryview(into).cast("B") if plan.compressor is None else plan.compressor.encode(into)


def _write_shard(path: Path, encoding: list, buffer: np.ndarray, order: list[tuple[int, ...]], per_shard: tuple[int, ...],
                 plan: ShardPlan) -> None:
    """As zarr's LocalStore writes an object (a temporary beside it, then one rename), in zarr's layout: the chunks
    in Morton order, each written as soon as it is encoded while the pool encodes the ones after it, then the index
    (before them where the metadata says so, in the room left for it)."""
    index_nbytes = 16 * len(order) + 4
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(f".{uuid.uuid4().hex}.partial")
    try:
        with open(temp, "wb") as handle:
            start = index_nbytes if plan.index_at_start else 0
            handle.seek(start)
            lengths = []
            if plan.compressor is None and None not in encoding:  # the chunks lie end to end in the buffer: a write a half
                for half in encoding:
                    handle.write(half.result())
                lengths = [buffer[0].nbytes] * len(order)
            else:
                for future in encoding:
                    chunk = None if future is None else future.result()
                    lengths.append(None if chunk is None else len(chunk))
                    if chunk is not None:
                        handle.write(chunk)
            index = _index(lengths, start, order, per_shard)
            if plan.index_at_start:
                handle.seek(0)
            handle.write(index)
        temp.replace(path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _index(lengths: list, start: int, order: list[tuple[int, ...]], per_shard: tuple[int, ...]) -> bytes:
    """The shard index: (offset, length) per chunk as little-endian uint64, unstored chunks all ones, then its crc32c."""
    index = np.full((*per_shard, 2), _EMPTY, dtype="<u8")
    for coords, length in zip(order, lengths, strict=True):
        if length is not None:
            index[coords] = (start, length)
            start += length
    encoded = index.tobytes()
    return encoded + np.uint32(google_crc32c.value(encoded)).astype("<u4").tobytes()
