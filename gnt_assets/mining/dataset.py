"""``MiningTiles``: the mining training tiles as a PyTorch dataset.

Data: Landsat annual composites (bands blue, green, red, nir, swir1, swir2,
thermal) cut into 64x64 tiles of the 0.000269495 deg world grid, with a mine
mask rasterized from the mine polygons (Maus et al. 2022 style) and a valid
mask. Layout on disk, one folder per country x year partition (written by the
``mining_training_tiles`` asset through the mmap tensor IO manager)::

    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/index.json
    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/tensors-<version>.bin

Construction reads the JSON indexes once and keeps, of their rows, only a
per-tile table (``year``, ``tile_ix``, ``tile_iy``, cluster number: 14 bytes a
tile) in a temporary ``.npy`` file beside the cluster ids, which every process
memory-maps (``np.load(mmap_mode="r")``): the pages are shared through the page
cache, never pickled, and no Python object per tile exists for a forked worker
to copy by touching its reference count (about 66M tiles world-wide). What a
``DataLoader`` pickles into each worker is small whatever the number of tiles:
folders, the data file each index named, record layouts, per-partition start
positions and the table's path. Each process maps the data files itself on
first access (``torch.from_file``, a private copy-on-write mapping: the file
never changes). The parsed indexes (``indexes``, ``tiles``, for samplers) are
read again only when asked for.

Batches: ``DataLoader`` with automatic batching calls ``__getitems__``, which
gathers each field of the batch with one copy straight into a batch tensor, in
the sampler's order (on object stores: each partition's records sorted, one
batch of ranged reads). ``loader(...)`` builds a ``DataLoader`` whose collate
hands that batch over as is; with workers, each worker writes its batches into
shared-memory slots made once and the main process copies each batch out
(``worker_batches``), instead of every batch faulting in fresh shared memory.
A plain ``DataLoader`` with the default collate gets the same samples in the
same order (it stacks them once more). ``export_tile_folders`` writes the seed's per-tile ``.pt`` layout
for code that expects it. Samples are ``(image, mask)`` tensors, or with
``return_dict=True`` a dict in TorchGeo's style: ``image`` float32 (7, 64,
64), ``mask`` uint8 (1, 64, 64), ``valid`` uint8 (1, 64, 64), plus
``country``, ``year``, ``cluster_id``, ``tile_ix``, ``tile_iy``.
"""

from __future__ import annotations

import copy
import operator
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, default_collate, get_worker_info
from upath import UPath

from gnt_assets.core.atomic import is_local
from gnt_assets.core.packed_tensors import PackedIndex, PackedTensorError, open_packed, read_index
from gnt_assets.io_managers.mmap_tensors import ROOT_FOLDER, tensor_folder
from gnt_assets.mining.worker_batches import SlotBatch, SlotLoader, SlotRing, slot_bytes, slots_per_worker

ASSET_KEY = dg.AssetKey("mining_training_tiles")


def partition_folders(root: UPath | str, partitions: Sequence[str] | None = None) -> list[UPath]:
    """Folders of the given ``ISO3|year`` partitions, or of every published one under ``root``."""
    root = UPath(root)
    if partitions is not None:
        return [tensor_folder(root, ASSET_KEY, key) for key in partitions]
    base = root.joinpath(ROOT_FOLDER, *ASSET_KEY.path)
    if not base.exists():
        return []
    return sorted(index.parent for index in base.glob("*/*/index.json"))


TUPLE_FIELDS = ("features", "labels")


ROW_TABLE = np.dtype([("year", "<i2"), ("tile_ix", "<i4"), ("tile_iy", "<i4"), ("cluster", "<i4")])


class _RowTable:
    """Every tile's ``ROW_TABLE`` row (dataset order) and the cluster ids they number, as ``.npy`` files
    in a temporary folder removed when the last dataset of the process that made it is gone."""

    def __init__(self, indexes: Iterable[PackedIndex]) -> None:
        """``indexes`` one at a time: each one's parsed rows can go once its part of the table is made."""
        self.folder = tempfile.mkdtemp(prefix="mining-tiles-")
        weakref.finalize(self, shutil.rmtree, self.folder, ignore_errors=True)
        parts: list[np.ndarray] = []
        numbers: dict[str, int] = {}
        for index in indexes:
            part = np.zeros(index.count, ROW_TABLE)
            for column in ("year", "tile_ix", "tile_iy"):
                part[column] = index.rows[column]
            part["cluster"] = [numbers.setdefault(c, len(numbers)) for c in index.rows["cluster_id"]]
            parts.append(part)
        np.save(self.rows_path, np.concatenate(parts) if parts else np.zeros(0, ROW_TABLE))
        np.save(self.clusters_path, np.array(list(numbers), dtype=bytes) if numbers else np.zeros(0, "S1"))

    @property
    def rows_path(self) -> str:
        return os.path.join(self.folder, "rows.npy")

    @property
    def clusters_path(self) -> str:
        return os.path.join(self.folder, "clusters.npy")


@dataclass(frozen=True)
class _Part:
    """What a worker needs to read one partition (pickled instead of its index rows)."""

    folder: UPath
    data_file: str
    count: int
    record_bytes: int
    layout: tuple[tuple[str, int, int, torch.dtype, tuple[int, ...]], ...]  # (field, offset, bytes, dtype, shape)

    @property
    def data_path(self) -> UPath:
        return self.folder / self.data_file


class TileBatch(Sequence):
    """A batch from ``MiningTiles.__getitems__``: the collated batch (what ``MiningTiles.collate``
    hands over as is) that also reads as the list of its samples (views into the batch), which is
    what the default collate expects."""

    def __init__(self, collated, samples: Callable[[int], object], length: int) -> None:
        self.collated = collated
        self._samples = samples
        self._length = length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._length))]
        if not -self._length <= i < self._length:
            raise IndexError(i)
        return self._samples(i % self._length)


class MiningTiles(Dataset):
    """Training tiles of one or many country-year partitions (see the module docstring for layout)."""

    def __init__(
        self,
        root: UPath | str | None = None,
        partitions: Sequence[str] | None = None,
        *,
        folders: Sequence[UPath | str] | None = None,
        return_dict: bool = False,
        transforms: Callable[[dict], dict] | None = None,
        pin_memory: bool = False,
    ) -> None:
        if folders is None:
            if root is None:
                raise ValueError("MiningTiles needs a storage root (with optional partitions) or explicit folders")
            folders = partition_folders(root, partitions)
        if pin_memory and not _accelerator_available():
            raise ValueError("MiningTiles(pin_memory=True) needs a CUDA or other accelerator; torch sees none here")
        parts: list[_Part] = []

        def opened() -> Iterator[PackedIndex]:  # one parsed index alive at a time
            for folder in folders:
                index = open_packed(UPath(folder))
                parts.append(_Part(index.folder, index.data_file, index.count, index.record_dtype.itemsize, self._layout(index)))
                yield index

        self._row_table = _RowTable(opened())  # copies share it; it goes with the last of them
        self._parts_meta = tuple(parts)
        self._starts = np.cumsum([0, *(p.count for p in self._parts_meta)]).astype(np.int64)  # tile i is in part searchsorted
        self.return_dict = return_dict
        self.transforms = transforms
        self.pin_memory = pin_memory
        self.slot_ring: SlotRing | None = None  # set on the copy that ``loader`` hands to its workers
        self._row_paths = (self._row_table.rows_path, self._row_table.clusters_path)
        self._reset_process_state()

    def _reset_process_state(self) -> None:
        self._maps: dict[int, dict[str, torch.Tensor] | None] = {}
        self._indexes: dict[int, PackedIndex] = {}
        self._tiles: pd.DataFrame | None = None
        self._mapped_rows: tuple[np.ndarray, np.ndarray] | None = None
        self._pid = os.getpid()

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_maps", "_indexes", "_tiles", "_mapped_rows", "_row_table"):
            state.pop(name, None)  # workers map the files themselves; the table's files stay the making process's
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._reset_process_state()

    @property
    def indexes(self) -> list[PackedIndex]:
        """Every partition's parsed index (read in this process on first use)."""
        return [self._index(part) for part in range(len(self._parts_meta))]

    @property
    def tiles(self) -> pd.DataFrame:
        """One row per tile: ``part``, ``record``, ``country`` and the index columns (``cluster_ids``: every
        cluster covering the tile, ``cluster_id`` the first), built on first use."""
        if self._tiles is None:
            frames = []
            for part, index in enumerate(self.indexes):
                rows = pd.DataFrame({k: v for k, v in index.rows.items() if k not in ("offset", "crc32")})
                if "cluster_ids" not in rows:  # written before tiles were stored once for all their clusters
                    rows["cluster_ids"] = [[c] for c in rows["cluster_id"]]
                rows["country"] = index.folder.parent.name
                rows["part"] = part
                rows["record"] = np.arange(index.count)
                frames.append(rows)
            empty = pd.DataFrame(columns=["part", "record", "country", "year", "cluster_id", "cluster_ids", "tile_ix", "tile_iy"])
            self._tiles = pd.concat(frames, ignore_index=True) if frames else empty
        return self._tiles

    def _index(self, part: int) -> PackedIndex:
        """The partition's index, read once per process; refused if the partition was republished
        since this dataset was made (its rows would describe another data file)."""
        self._check_process()
        if part not in self._indexes:
            meta = self._parts_meta[part]
            index = read_index(meta.folder)
            if index.data_file != meta.data_file:
                raise PackedTensorError(
                    f"{meta.folder}: republished ({index.data_file}) since this MiningTiles opened {meta.data_file}; make a new one"
                )
            self._indexes[part] = index
        return self._indexes[part]

    def _check_process(self) -> None:
        if self._pid != os.getpid():  # a forked copy: mappings and caches belong to the parent
            self._reset_process_state()

    @staticmethod
    def _layout(index: PackedIndex) -> tuple[tuple[str, int, int, torch.dtype, tuple[int, ...]], ...]:
        """(field, byte offset in the record, bytes, torch dtype, shape) for slicing a record."""
        return tuple(
            (f.name, index.record_dtype.fields[f.name][1], f.nbytes, torch.from_numpy(np.empty(0, f.dtype)).dtype, f.shape)
            for f in index.fields
        )

    def _fields(self, part: int) -> dict[str, torch.Tensor] | None:
        """Per field, a (count, elements) view of the partition's data file mapped with ``torch.from_file``
        (read on access), made once per process; None for remote files."""
        self._check_process()
        if part not in self._maps:
            meta = self._parts_meta[part]
            fields = None
            if is_local(meta.data_path) and meta.count:
                if not os.path.exists(meta.data_path.path):
                    raise PackedTensorError(
                        f"{meta.folder}: {meta.data_file} is gone (republished or removed since this MiningTiles was made); make a new one"
                    )
                flat = torch.from_file(meta.data_path.path, shared=False, size=meta.count * meta.record_bytes, dtype=torch.uint8)
                records = flat.view(meta.count, meta.record_bytes)
                # (count, elements) views: rows of contiguous elements are gathered with one memcpy each
                fields = {name: records[:, offset : offset + nbytes].view(dtype) for name, offset, nbytes, dtype, _ in meta.layout}
            self._maps[part] = fields
        return self._maps[part]

    def _locate(self, indices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tile positions, partitions, records within them) of dataset indices; negatives count from the end."""
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        bad = (positions < -len(self)) | (positions >= len(self))
        if bad.any():
            raise IndexError(f"MiningTiles index {int(positions[bad][0])} out of range for {len(self)} tiles")
        positions = positions % max(len(self), 1)
        parts = np.searchsorted(self._starts, positions, side="right") - 1
        return positions, parts, positions - self._starts[parts]

    def _allocate(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """Where the batch is going: pinned memory if asked (main process), shared memory in a
        DataLoader worker (so sending it to the main process is a file descriptor, not a copy)."""
        if get_worker_info() is not None:
            numel = int(np.prod(shape, dtype=np.int64))
            # what torch's default collate does for the same reason
            storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel, device="cpu")
            return torch.empty(0, dtype=dtype).new(storage).view(shape)
        return torch.empty(shape, dtype=dtype, pin_memory=self.pin_memory)

    def _read(self, indices, allocate=None) -> tuple[np.ndarray, dict[str, torch.Tensor]]:
        """The fields of many tiles as batch tensors in the order asked: per field one ``torch.stack``
        of the records' rows (views of the mapping) straight into the batch, the only copy; on object
        stores each partition's records first come sorted in one batch of ranged reads.

        Not ``index_select``: it splits the gather over torch's intra-op threads, which on a loaded
        machine wait on each other (27 ms instead of 5 ms per batch of 64 tiles with 2 threads,
        measured); and locally the rows are not gathered sorted, since that means a scratch batch
        and a second copy to restore the order (7.7 ms instead of 1.9 ms, measured)."""
        positions, parts, records = self._locate(indices)
        if not len(positions):
            return positions, {}
        rows = records.copy()
        sources: dict[int, dict[str, torch.Tensor]] = {}
        for part in np.unique(parts).tolist():
            fields = self._fields(part)
            if fields is None:
                where = np.nonzero(parts == part)[0]
                fields, rows[where] = self._fetch_remote(part, records[where]), np.arange(len(where))
            sources[part] = fields
        layout = self._parts_meta[int(parts[0])].layout
        wanted = None if self.return_dict or self.transforms is not None else TUPLE_FIELDS  # tuples carry no valid mask
        allocate = allocate or self._allocate
        out = {
            name: allocate((len(positions), *shape), dtype)
            for name, _, _, dtype, shape in layout
            if wanted is None or name in wanted
        }
        picks = list(zip(parts.tolist(), rows.tolist(), strict=True))
        for name, target in out.items():
            torch.stack([sources[part][name][row] for part, row in picks], out=target.view(len(positions), -1))
        return positions, out

    def _fetch_remote(self, part: int, records: np.ndarray) -> dict[str, torch.Tensor]:
        """Records of a remote partition (in the order given) from one ``cat_ranges`` call over the sorted
        distinct records (concurrent on async file systems)."""
        meta = self._parts_meta[part]
        fs, path = meta.data_path.fs, meta.data_path.path
        unique, inverse = np.unique(records, return_inverse=True)
        starts = (unique * meta.record_bytes).tolist()
        blobs = fs.cat_ranges([path] * len(starts), starts, [s + meta.record_bytes for s in starts])
        for record, blob in zip(unique, blobs, strict=True):
            if isinstance(blob, Exception):
                raise blob
            if len(blob) != meta.record_bytes:
                raise PackedTensorError(f"{meta.data_path}: record {record} is truncated ({len(blob)} of {meta.record_bytes} bytes)")
        raw = torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8).view(len(unique), meta.record_bytes)[torch.from_numpy(inverse)]
        return {name: raw[:, offset : offset + nbytes].view(dtype) for name, offset, nbytes, dtype, _ in meta.layout}

    def _rows(self) -> tuple[np.ndarray, np.ndarray]:
        """The row table and cluster ids, memory-mapped once per process."""
        self._check_process()
        if self._mapped_rows is None:
            self._mapped_rows = tuple(np.load(path, mmap_mode="r") for path in self._row_paths)
        return self._mapped_rows

    def _row(self, position: int) -> dict:
        part = int(np.searchsorted(self._starts, position, side="right") - 1)
        table, clusters = self._rows()
        row = table[position]
        return {"country": self._parts_meta[part].folder.parent.name, "year": int(row["year"]),
                "cluster_id": clusters[row["cluster"]].decode(), "tile_ix": int(row["tile_ix"]), "tile_iy": int(row["tile_iy"])}

    def __getitem__(self, i: int):
        positions, fields = self._read([operator.index(i)])
        return self._sample(int(positions[0]), {name: tensor[0] for name, tensor in fields.items()})

    def __getitems__(self, indices: Sequence[int]) -> TileBatch | SlotBatch | list:
        """A batch in the order given (what ``DataLoader`` calls with automatic batching); in a worker of
        ``loader(...)``, written into the worker's next shared-memory slot (``worker_batches``)."""
        worker = get_worker_info()
        if self.slot_ring is not None and worker is not None and self.transforms is None and len(indices) <= self.slot_ring.batch_size:
            writer = self.slot_ring.writer(worker.id)
            positions, fields = self._read(indices, writer.allocate)
            return writer.publish(self._collated(positions, fields))
        positions, fields = self._read(indices)

        def sample(k: int):
            return self._sample(int(positions[k]), {name: tensor[k] for name, tensor in fields.items()})

        if self.transforms is not None:  # per-sample transforms may change shapes: the default collate stacks them
            return [sample(k) for k in range(len(positions))]
        return TileBatch(self._collated(positions, fields), sample, len(positions))

    def _collated(self, positions: np.ndarray, fields: dict[str, torch.Tensor]):
        """The batch as the default collate would stack it: a tuple, or a dict of batch fields."""
        if not self.return_dict:
            return fields["features"], fields["labels"]
        rows = [self._row(int(p)) for p in positions]
        return {
            "image": fields["features"], "mask": fields["labels"], "valid": fields["valid"],
            "country": [r["country"] for r in rows], "year": torch.tensor([r["year"] for r in rows]),
            "cluster_id": [r["cluster_id"] for r in rows], "tile_ix": torch.tensor([r["tile_ix"] for r in rows]),
            "tile_iy": torch.tensor([r["tile_iy"] for r in rows]),
        }

    @staticmethod
    def collate(batch):
        """A ``DataLoader`` collate that hands a ``TileBatch`` or ``SlotBatch`` over as is (default collate otherwise)."""
        if isinstance(batch, TileBatch):
            return batch.collated
        if isinstance(batch, SlotBatch):
            return batch
        return default_collate(batch)

    def loader(self, batch_size: int = 64, **kwargs) -> DataLoader:
        """A ``DataLoader`` over this dataset that passes ``__getitems__``'s batch through (``collate``);
        keyword arguments as for ``DataLoader``. With workers (and no per-sample transforms), batches
        cross from the workers through shared-memory slots made once (``worker_batches.SlotLoader``),
        copied out in the main process into pinned memory if the dataset has ``pin_memory=True``."""
        kwargs.setdefault("collate_fn", self.collate)
        workers = kwargs.get("num_workers", 0)
        if workers == 0 or self.transforms is not None or kwargs.get("batch_sampler") is not None:
            if self.pin_memory and workers > 0:
                kwargs.setdefault("pin_memory", True)
            return DataLoader(self, batch_size=batch_size, **kwargs)
        dataset = copy.copy(self)
        slots = slots_per_worker(workers, kwargs.get("prefetch_factor") or 2)
        layouts = [[nbytes for name, _, nbytes, _, _ in part.layout] for part in self._parts_meta] or [[0]]
        nbytes = max(slot_bytes(batch_size, fields) for fields in layouts)
        dataset.slot_ring = SlotRing(workers, slots, nbytes, batch_size)
        return SlotLoader(dataset, batch_size=batch_size, **kwargs)

    def _sample(self, position: int, fields: dict[str, torch.Tensor]):
        if not self.return_dict and self.transforms is None:
            return fields["features"], fields["labels"]
        sample = {"image": fields["features"], "mask": fields["labels"], "valid": fields["valid"], **self._row(position)}
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample if self.return_dict else (sample["image"], sample["mask"])


def _accelerator_available() -> bool:
    accelerator = getattr(torch, "accelerator", None)
    return bool(accelerator.is_available()) if accelerator is not None else torch.cuda.is_available()


def export_tile_folders(index: PackedIndex, target: UPath) -> list[UPath]:
    """Write the seed's per-tile layout for code that expects it:
    ``{cluster}/{year}/{ix}_{iy}/features.pt, labels.pt, metadata.json`` (features float32 (7, 64, 64)
    NaN->0, labels uint8 (1, 64, 64)); a tile several clusters cover is written once, under its first
    cluster (``cluster_ids`` in its metadata lists all). Each tile folder appears atomically; re-running rewrites it.
    Returns where each folder is read from (on object stores the version its pointer names,
    see ``core.atomic.resolve_directory``)."""
    import json

    from gnt_assets.core.atomic import atomic_directory, resolve_directory

    records = index.memmap() if is_local(index.data_path) else index.read_records(range(index.count))
    bands = index.attrs.get("bands")
    folders = []
    for i in range(index.count):
        row = {k: v[i] for k, v in index.rows.items() if k not in ("offset", "crc32")}
        folder = target / str(row["cluster_id"]) / str(row["year"]) / f"{row['tile_ix']}_{row['tile_iy']}"
        features, labels = torch.from_numpy(np.array(records[i]["features"])), torch.from_numpy(np.array(records[i]["labels"]))
        metadata = {
            **{k: row[k] for k in ("tile_ix", "tile_iy", "year", "cluster_id", "geometry_hash")},
            "cluster_ids": row.get("cluster_ids", [row["cluster_id"]]),
            "shapes": {"features": list(features.shape), "labels": list(labels.shape)},
            "bands": bands,
            "dtype": {"features": str(features.dtype).removeprefix("torch."), "labels": str(labels.dtype).removeprefix("torch.")},
        }
        with atomic_directory(folder) as work:
            with (work / "features.pt").open("wb") as handle:
                torch.save(features, handle)
            with (work / "labels.pt").open("wb") as handle:
                torch.save(labels, handle)
            (work / "metadata.json").write_text(json.dumps(metadata, indent=1))
        folders.append(resolve_directory(folder))
    return folders
