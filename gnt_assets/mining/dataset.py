"""``MiningTiles``: the mining training tiles as a PyTorch dataset.

Data: Landsat annual composites (bands blue, green, red, nir, swir1, swir2,
thermal) cut into 64x64 tiles of the 0.000269495 deg world grid, with a mine
mask rasterized from the mine polygons (Maus et al. 2022 style) and a valid
mask. Layout on disk, one folder per country x year partition (written by the
``mining_training_tiles`` asset through the mmap tensor IO manager)::

    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/index.json
    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/tensors-<version>.bin

Construction reads only the small JSON indexes; each worker process maps the
data files on first access (``torch.from_file``, a private copy-on-write
mapping: the file never changes), so the dataset pickles cheaply into
``DataLoader(num_workers>0)`` workers, reading a sample touches only its
record, and a sample's tensors are views of the mapping: the DataLoader's
collate is the only copy. That makes ``num_workers=0`` the fastest way to read
plain tiles; workers add a trip through shared memory per batch and pay off
only with CPU-heavy ``transforms``. ``export_tile_folders`` writes the seed's per-tile
``.pt`` layout for code that expects it. Samples are ``(image, mask)`` tensors, or with ``return_dict=True`` a
dict in TorchGeo's style: ``image`` float32 (7, 64, 64), ``mask`` uint8
(1, 64, 64), ``valid`` uint8 (1, 64, 64), plus ``country``, ``year``,
``cluster_id``, ``tile_ix``, ``tile_iy``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import dagster as dg
import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from upath import UPath

from gnt_assets.core.atomic import is_local
from gnt_assets.core.packed_tensors import PackedIndex, open_packed
from gnt_assets.io_managers.mmap_tensors import ROOT_FOLDER, tensor_folder

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
    ) -> None:
        if folders is None:
            if root is None:
                raise ValueError("MiningTiles needs a storage root (with optional partitions) or explicit folders")
            folders = partition_folders(root, partitions)
        self.indexes: list[PackedIndex] = [open_packed(UPath(f)) for f in folders]
        self._layouts = [self._layout(index) for index in self.indexes]
        self.return_dict = return_dict
        self.transforms = transforms
        frames = []
        for part, index in enumerate(self.indexes):
            rows = pd.DataFrame({k: v for k, v in index.rows.items() if k not in ("offset", "crc32")})
            rows["country"] = index.folder.parent.name
            rows["part"] = part
            rows["record"] = np.arange(index.count)
            frames.append(rows)
        self.tiles = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["part", "record", "country", "year", "cluster_id", "tile_ix", "tile_iy"])
        self._parts = self.tiles["part"].to_numpy(np.int64)
        self._records_at = self.tiles["record"].to_numpy(np.int64)
        self._maps: dict[int, dict[str, torch.Tensor] | None] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.tiles)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # workers map the files themselves
        return state

    def _layout(self, index: PackedIndex) -> list[tuple[str, int, int, torch.dtype, tuple[int, ...]]]:
        """(field, byte offset in the record, bytes, torch dtype, shape) for slicing a record."""
        return [
            (f.name, index.record_dtype.fields[f.name][1], f.nbytes, torch.from_numpy(np.empty(0, f.dtype)).dtype, f.shape)
            for f in index.fields
        ]

    def _fields(self, part: int) -> dict[str, torch.Tensor] | None:
        """Per field, a (count, *shape) view of the partition's data file mapped with ``torch.from_file``
        (read on access), made once per process; None for remote files."""
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        if part not in self._maps:
            index = self.indexes[part]
            fields = None
            if is_local(index.data_path) and index.count:
                records = index.torch_records()
                fields = {
                    name: records[:, offset : offset + nbytes].view(dtype).view(index.count, *shape)
                    for name, offset, nbytes, dtype, shape in self._layouts[part]
                }
            self._maps[part] = fields
        return self._maps[part]

    def _record(self, part: int, record: int) -> dict[str, torch.Tensor]:
        """One record's fields: zero-copy views of the mapping locally (the DataLoader's collate does the
        only copy), one ranged read on object stores."""
        fields = self._fields(part)
        if fields is not None:
            return {name: tensor[record] for name, tensor in fields.items()}
        raw = torch.from_numpy(self.indexes[part].read_records([record]).view(np.uint8).reshape(-1).copy())
        return {name: raw[offset : offset + nbytes].view(dtype).view(shape) for name, offset, nbytes, dtype, shape in self._layouts[part]}

    def __getitem__(self, i: int):
        if not -len(self) <= i < len(self):
            raise IndexError(f"MiningTiles index {i} out of range for {len(self)} tiles")
        i %= len(self)
        return self._sample(i, self._record(int(self._parts[i]), int(self._records_at[i])))

    def _sample(self, i: int, fields: dict[str, torch.Tensor]):
        if not self.return_dict and self.transforms is None:
            return fields["features"], fields["labels"]
        row = self.tiles.iloc[i]
        sample = {
            "image": fields["features"], "mask": fields["labels"], "valid": fields["valid"], "country": row["country"],
            "year": int(row["year"]), "cluster_id": row["cluster_id"], "tile_ix": int(row["tile_ix"]), "tile_iy": int(row["tile_iy"]),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample if self.return_dict else (sample["image"], sample["mask"])


def export_tile_folders(index: PackedIndex, target: UPath) -> list[UPath]:
    """Write the seed's per-tile layout for code that expects it:
    ``{cluster}/{year}/{ix}_{iy}/features.pt, labels.pt, metadata.json`` (features float32 (7, 64, 64)
    NaN->0, labels uint8 (1, 64, 64)). Each tile folder appears atomically; re-running rewrites it."""
    import json

    from gnt_assets.core.atomic import atomic_directory

    records = index.memmap() if is_local(index.data_path) else index.read_records(range(index.count))
    bands = index.attrs.get("bands")
    folders = []
    for i in range(index.count):
        row = {k: v[i] for k, v in index.rows.items() if k not in ("offset", "crc32")}
        folder = target / str(row["cluster_id"]) / str(row["year"]) / f"{row['tile_ix']}_{row['tile_iy']}"
        features, labels = torch.from_numpy(np.array(records[i]["features"])), torch.from_numpy(np.array(records[i]["labels"]))
        metadata = {
            **{k: row[k] for k in ("tile_ix", "tile_iy", "year", "cluster_id", "geometry_hash")},
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
        folders.append(folder)
    return folders
