"""``MiningTiles``: the mining training tiles as a PyTorch dataset.

Data: Landsat annual composites (bands blue, green, red, nir, swir1, swir2,
thermal) cut into 64x64 tiles of the 0.000269495 deg world grid, with a mine
mask rasterized from the mine polygons (Maus et al. 2022 style) and a valid
mask. Layout on disk, one folder per country x year partition (written by the
``mining_training_tiles`` asset through the mmap tensor IO manager)::

    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/index.json
    {storage root}/tensors/mining_training_tiles/{ISO3}/{year}/tensors-<version>.bin

Construction reads only the small JSON indexes; each worker process maps the
data files on first access, so the dataset pickles cheaply into
``DataLoader(num_workers>0)`` workers and reading a sample touches only its
record. Samples are ``(image, mask)`` tensors, or with ``return_dict=True`` a
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
        self._maps: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.tiles)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # workers map the files themselves
        return state

    def _records(self, part: int) -> np.ndarray | None:
        if self._pid != os.getpid():
            self._maps, self._pid = {}, os.getpid()
        if part not in self._maps:
            index = self.indexes[part]
            self._maps[part] = index.memmap() if is_local(index.data_path) else None
        return self._maps[part]

    def _read(self, part: int, records: np.ndarray) -> np.ndarray:
        mapped = self._records(part)
        if mapped is None:
            return self.indexes[part].read_records(records.tolist())
        return mapped[records]

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list:
        """Batched fetch (the DataLoader calls this): one fancy-index read per partition."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < -len(self) or indices.max() >= len(self)):
            raise IndexError(f"MiningTiles index out of range for {len(self)} tiles")
        indices = indices % max(len(self), 1)
        parts = self._parts[indices]
        samples: list = [None] * len(indices)
        for part in np.unique(parts):
            where = np.nonzero(parts == part)[0]
            records = self._read(int(part), self._records_at[indices[where]])
            images = torch.from_numpy(np.ascontiguousarray(records["features"]))
            masks = torch.from_numpy(np.ascontiguousarray(records["labels"]))
            valids = torch.from_numpy(np.ascontiguousarray(records["valid"])) if self.return_dict or self.transforms else None
            for j, position in enumerate(where):
                samples[position] = self._sample(int(indices[position]), images[j], masks[j], None if valids is None else valids[j])
        return samples

    def _sample(self, i: int, image: torch.Tensor, mask: torch.Tensor, valid: torch.Tensor | None):
        if not self.return_dict and self.transforms is None:
            return image, mask
        row = self.tiles.iloc[i]
        sample = {
            "image": image, "mask": mask, "valid": valid, "country": row["country"], "year": int(row["year"]),
            "cluster_id": row["cluster_id"], "tile_ix": int(row["tile_ix"]), "tile_iy": int(row["tile_iy"]),
        }
        if self.transforms is not None:
            sample = self.transforms(sample)
        return sample if self.return_dict else (sample["image"], sample["mask"])
