"""Sampling and splitting ``MiningTiles`` (kept apart from the dataset, as in TorchGeo).

* ``PreChippedTileSampler``: the tiles of chosen countries, years and clusters,
  shuffled or in order (TorchGeo calls datasets of ready-made chips
  "pre-chipped").
* ``random_cluster_assignment``: a train/validation(/test) split by cluster,
  in the manner of TorchGeo's ``random_grid_cell_assignment``. Clusters that
  share a tile or have touching tiles (8-neighbourhood) form one group, and a
  group goes wholly to one split, so no tile has a neighbour on the other side.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler, Subset

from gnt_assets.mining.dataset import MiningTiles


def _mask(dataset: MiningTiles, countries, years, clusters) -> np.ndarray:
    tiles = dataset.tiles
    keep = np.ones(len(tiles), bool)
    if countries is not None:
        keep &= tiles["country"].isin(list(countries)).to_numpy()
    if years is not None:
        keep &= tiles["year"].astype(int).isin([int(y) for y in years]).to_numpy()
    if clusters is not None:
        wanted = set(clusters)
        keep &= tiles["cluster_ids"].map(lambda ids: not wanted.isdisjoint(ids)).to_numpy(bool)
    return keep


class PreChippedTileSampler(Sampler[int]):
    """Indices of the tiles whose country, year and cluster are among those given (None = all)."""

    def __init__(
        self,
        dataset: MiningTiles,
        *,
        countries: Collection[str] | None = None,
        years: Collection[int] | None = None,
        clusters: Collection[str] | None = None,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.indices = np.nonzero(_mask(dataset, countries, years, clusters))[0]
        if len(self.indices) == 0:
            raise ValueError(f"no tiles match countries={countries} years={years} clusters={clusters}")
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(self.indices.tolist())
        order = torch.randperm(len(self.indices), generator=self.generator).numpy()
        return iter(self.indices[order].tolist())


def cluster_groups(dataset: MiningTiles) -> dict[str, int]:
    """Cluster id -> group id, joining clusters that share or touch tiles (union-find)."""
    parent: dict[str, str] = {c: c for ids in dataset.tiles["cluster_ids"] for c in ids}

    def find(c: str) -> str:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    owner: dict[tuple[int, int], str] = {}
    for clusters, ix, iy in dataset.tiles[["cluster_ids", "tile_ix", "tile_iy"]].itertuples(index=False):
        cluster = clusters[0]
        for other in clusters[1:]:  # clusters sharing the tile
            parent[find(other)] = find(cluster)
        for dx in (-1, 0, 1):
            for dy in (-1, 0, 1):
                other = owner.get((ix + dx, iy + dy))
                if other is not None:
                    parent[find(cluster)] = find(other)
        owner.setdefault((ix, iy), cluster)
    roots = sorted({find(c) for c in parent})
    return {c: roots.index(find(c)) for c in parent}


def random_cluster_assignment(
    dataset: MiningTiles, lengths: Sequence[float], generator: torch.Generator | None = None
) -> list[Subset]:
    """Split into ``len(lengths)`` subsets by whole cluster groups; ``lengths`` are fractions of groups."""
    if not np.isclose(sum(lengths), 1.0):
        raise ValueError(f"lengths must be fractions summing to 1, got {list(lengths)}")
    groups = cluster_groups(dataset)
    count = len(set(groups.values()))
    if count < len(lengths):
        raise ValueError(f"{count} cluster groups cannot fill {len(lengths)} splits without sharing a group")
    order = torch.randperm(count, generator=generator).tolist()
    bounds = np.round(np.cumsum([0, *lengths]) * count).astype(int)
    bounds[1:-1] = np.clip(bounds[1:-1], np.arange(1, len(lengths)), count - np.arange(len(lengths) - 1, 0, -1))
    split_of_group = {}
    for split, (start, stop) in enumerate(itertools.pairwise(bounds)):
        for group in order[start:stop]:
            split_of_group[group] = split
    tile_split = dataset.tiles["cluster_id"].map(groups)  # a tile's clusters are all in one group.map(split_of_group).to_numpy()
    return [Subset(dataset, np.nonzero(tile_split == s)[0].tolist()) for s in range(len(lengths))]
