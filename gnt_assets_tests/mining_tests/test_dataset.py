"""MiningTiles through a DataLoader with worker processes, samplers and the cluster split."""

from __future__ import annotations

import os

import numpy as np
import pytest
import shapely
import torch
import xarray as xr
from torch.utils.data import DataLoader
from upath import UPath

from gnt_assets.core.packed_tensors import PackedTensorError
from gnt_assets.io_managers.mmap_tensors import tensor_folder
from gnt_assets.mining.dataset import ASSET_KEY, MiningTiles, partition_folders
from gnt_assets.mining.samplers import PreChippedTileSampler, cluster_groups, random_cluster_assignment
from gnt_assets.mining.training_tiles import ClusterTile, geometry_hash, training_tiles
from gnt_assets.mining.worker_batches import SlotLoader, SlotRing, slot_bytes
from gnt_assets_tests.mining_tests import training_fixtures as fx

IX0 = {"ZAF": fx.IX0, "NAM": fx.IX0 + 100}  # NAM's clusters lie far from ZAF's


def publish(root: UPath, country: str, year: int) -> None:
    region = fx.write_region(root / "regions" / country / f"{year}.zarr", year, ix0=IX0[country])
    clusters = fx.mining_clusters(country, IX0[country])
    tiles = [
        ClusterTile(ix, iy, f"{country}-{row.cluster_id[:6]}", geometry_hash(row.geometry))
        for row in clusters.itertuples()
        for ix, iy in row.tiles
    ]
    pack, _ = training_tiles(
        xr.open_zarr(region.path, consolidated=False), tiles, list(fx.mine_polygons().geometry),
        partition=f"{country}|{year}", year=year, chunks_present=lambda rows, cols: True,
    )
    pack.write(tensor_folder(root, ASSET_KEY, f"{country}|{year}"))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> UPath:
    root = UPath(tmp_path_factory.mktemp("tiles"))
    for country, year in (("ZAF", 2020), ("ZAF", 2021), ("NAM", 2020)):
        publish(root, country, year)
    return root


def expected_labels(tile_ix: int, tile_iy: int) -> np.ndarray:
    geobox = fx.world_tile(tile_ix, tile_iy)
    coords = geobox.coordinates
    lon, lat = np.meshgrid(coords["longitude"].values, coords["latitude"].values)
    return shapely.contains_xy(shapely.union_all(fx.mine_polygons().geometry.values), lon, lat)


def test_dataloader_with_two_workers_gives_aligned_tiles_and_labels(root):
    dataset = MiningTiles(root, return_dict=True)
    assert len(dataset) == 3 * 6 and sorted(dataset.tiles["country"].unique()) == ["NAM", "ZAF"]
    loader = DataLoader(dataset, batch_size=4, num_workers=2, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = 0
    for batch in loader:
        assert batch["image"].shape[1:] == (7, 64, 64) and batch["image"].dtype == torch.float32
        assert batch["mask"].shape[1:] == (1, 64, 64) and batch["mask"].dtype == torch.uint8
        for image, mask, valid, ix, iy, year, country in zip(
            batch["image"], batch["mask"], batch["valid"], batch["tile_ix"], batch["tile_iy"], batch["year"], batch["country"], strict=False
        ):
            np.testing.assert_array_equal(mask[0].numpy(), expected_labels(int(ix), int(iy)))
            r, c = (int(iy) - fx.IY0) * 64, (int(ix) - IX0[country]) * 64
            window = fx.reflectance(int(year))[:, r : r + 64, c : c + 64]
            np.testing.assert_array_equal(image.numpy(), np.nan_to_num(window))
            np.testing.assert_array_equal(valid[0].numpy(), np.isfinite(window).all(axis=0))
            seen += 1
    assert seen == len(dataset)
    assert dataset._maps == {}  # the parent never mapped anything: workers did


def test_tuple_samples_and_partition_selection(root):
    dataset = MiningTiles(root, ["ZAF|2021"])
    image, mask = dataset[3]
    assert image.shape == (7, 64, 64) and mask.shape == (1, 64, 64)
    assert len(dataset) == 6 and set(dataset.tiles["year"]) == {2021}
    assert partition_folders(root, ["NAM|2020"])[0].parts[-2:] == ("NAM", "2020")
    with pytest.raises(IndexError):
        dataset[6]


def test_sampler_restricts_to_country_year_and_cluster(root):
    dataset = MiningTiles(root)
    cluster = dataset.tiles.loc[dataset.tiles["country"] == "ZAF", "cluster_id"].iloc[0]
    sampler = PreChippedTileSampler(dataset, countries=["ZAF"], years=[2020], clusters=[cluster], generator=torch.Generator().manual_seed(1))
    chosen = dataset.tiles.iloc[list(sampler)]
    assert len(chosen) == len(sampler) > 0
    assert set(chosen["country"]) == {"ZAF"} and set(chosen["year"]) == {2020} and set(chosen["cluster_id"]) == {cluster}
    batches = list(DataLoader(dataset, batch_size=8, sampler=sampler))
    assert sum(len(b[0]) for b in batches) == len(sampler)
    with pytest.raises(ValueError, match="no tiles match"):
        PreChippedTileSampler(dataset, countries=["CHL"])


def test_split_by_cluster_never_puts_neighbouring_tiles_on_both_sides(root):
    dataset = MiningTiles(root)
    groups = cluster_groups(dataset)
    # The two clusters of a country share a tile, so they are one group; the countries lie apart.
    assert len(set(groups.values())) == 2
    train, validation = random_cluster_assignment(dataset, [0.5, 0.5], generator=torch.Generator().manual_seed(3))
    assert len(train) + len(validation) == len(dataset) and len(train) and len(validation)
    train_tiles = dataset.tiles.iloc[train.indices]
    validation_tiles = dataset.tiles.iloc[validation.indices]
    assert not set(train_tiles["cluster_id"]) & set(validation_tiles["cluster_id"])
    with pytest.raises(ValueError, match="cannot fill 3 splits"):
        random_cluster_assignment(dataset, [0.4, 0.3, 0.3])


def test_export_to_the_seed_per_tile_layout(root, tmp_path):
    import json

    from gnt_assets.core.packed_tensors import open_packed
    from gnt_assets.mining.dataset import export_tile_folders

    index = open_packed(tensor_folder(root, ASSET_KEY, "ZAF|2020"))
    folders = export_tile_folders(index, UPath(tmp_path) / "landsat_mmap")
    assert len(folders) == index.count
    first = folders[0]
    assert first.parts[-3:] == (index.rows["cluster_id"][0], "2020", f"{index.rows['tile_ix'][0]}_{index.rows['tile_iy'][0]}")
    features = torch.load(first / "features.pt", mmap=True)
    labels = torch.load(first / "labels.pt")
    assert features.shape == (7, 64, 64) and features.dtype == torch.float32 and labels.shape == (1, 64, 64)
    np.testing.assert_array_equal(features.numpy(), index.memmap()["features"][0])
    metadata = json.loads((first / "metadata.json").read_text())
    assert metadata["tile_ix"] == index.rows["tile_ix"][0] and metadata["bands"][0] == "blue"
    assert metadata["shapes"] == {"features": [7, 64, 64], "labels": [1, 64, 64]}
    assert len(export_tile_folders(index, UPath(tmp_path) / "landsat_mmap")) == index.count  # re-run is safe


def test_tiles_on_an_object_store_read_with_ranged_requests(root, s3_root):
    from gnt_assets.core.packed_tensors import open_packed

    local = open_packed(tensor_folder(root, ASSET_KEY, "NAM|2020"))
    records = local.memmap()
    remote = tensor_folder(s3_root, ASSET_KEY, "NAM|2020")
    write_packed_like(local, remote, records)
    dataset = MiningTiles(s3_root, ["NAM|2020"])
    image, mask = dataset[2]
    np.testing.assert_array_equal(image.numpy(), records["features"][2])
    np.testing.assert_array_equal(mask.numpy(), records["labels"][2])
    images, masks = next(iter(dataset.loader(4, sampler=[5, 2, 5, 0])))  # one batch of ranged reads
    np.testing.assert_array_equal(images.numpy(), records["features"][[5, 2, 5, 0]])
    np.testing.assert_array_equal(masks.numpy(), records["labels"][[5, 2, 5, 0]])


def write_packed_like(index, folder, records):
    from gnt_assets.core.packed_tensors import write_packed

    rows = {k: v for k, v in index.rows.items() if k not in ("offset", "crc32")}
    write_packed(folder, index.fields, {f.name: np.array(records[f.name]) for f in index.fields}, rows, index.attrs)


def reference_samples(root: UPath, dataset: MiningTiles, order: list[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(features, labels) of the tiles in ``order`` read straight from the packed files with np.memmap."""
    from gnt_assets.core.packed_tensors import open_packed

    records = {}
    out = []
    for i in order:
        row = dataset.tiles.iloc[i]
        part = int(row["part"])
        if part not in records:
            records[part] = open_packed(dataset.indexes[part].folder).memmap()
        record = records[part][int(row["record"])]
        out.append((np.array(record["features"]), np.array(record["labels"])))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_batched_loader_gives_the_same_samples_in_the_same_order(root, workers):
    dataset = MiningTiles(root)  # three partitions: batches mix them
    order = list(torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(5)))
    expected = reference_samples(root, dataset, order)

    def batches(loader):
        return [(images.clone(), masks.clone()) for images, masks in loader]

    def sampler():
        return torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(5))

    batched = batches(dataset.loader(5, sampler=sampler(), num_workers=workers))
    plain = batches(DataLoader(dataset, batch_size=5, sampler=sampler(), num_workers=workers))  # default collate
    per_sample = [dataset[i] for i in order]
    assert [len(b[0]) for b in batched] == [5, 5, 5, 3]
    images = torch.cat([b[0] for b in batched])
    masks = torch.cat([b[1] for b in batched])
    for k, (features, labels) in enumerate(expected):
        np.testing.assert_array_equal(images[k].numpy(), features)
        np.testing.assert_array_equal(masks[k].numpy(), labels)
        np.testing.assert_array_equal(per_sample[k][0].numpy(), features)
    for (a_images, a_masks), (b_images, b_masks) in zip(batched, plain, strict=True):
        assert torch.equal(a_images, b_images) and torch.equal(a_masks, b_masks)


def test_worker_batches_cross_through_slots_and_an_early_break_loses_nothing(root):
    dataset = MiningTiles(root, return_dict=True)

    def sampler():
        return torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(3))

    def second_epoch(loader):
        for k, _ in enumerate(loader):  # leave the first epoch early: its workers' last batches are dropped
            if k == 2:
                break
        return [{key: value.clone() if torch.is_tensor(value) else value for key, value in batch.items()} for batch in loader]

    loader = dataset.loader(3, sampler=sampler(), num_workers=2, persistent_workers=True)
    assert isinstance(loader, SlotLoader) and dataset.slot_ring is None  # the loader's copy holds the ring
    second = second_epoch(loader)
    expected = second_epoch(DataLoader(dataset, batch_size=3, sampler=sampler(), num_workers=2, persistent_workers=True))
    assert len(second) == len(expected) == 6
    for got, want in zip(second, expected, strict=True):
        assert not got["image"].is_shared()  # copied out of its slot, not a worker's shared memory
        for key in ("image", "mask", "valid", "year", "tile_ix", "tile_iy"):
            assert torch.equal(got[key], want[key])
        assert got["country"] == list(want["country"]) and got["cluster_id"] == list(want["cluster_id"])


def test_a_slot_overwritten_before_it_is_copied_out_is_refused():
    ring = SlotRing(workers=1, slots=2, nbytes=slot_bytes(4, [8]), batch_size=4)
    writer = ring.writer(0)
    values = writer.allocate((4, 2), torch.float32)
    values.copy_(torch.arange(8.0).view(4, 2))
    batch = writer.publish((values, {"year": torch.tensor([2020] * 4)}))
    copied, extra = ring.take(batch)
    assert torch.equal(copied, torch.arange(8.0).view(4, 2)) and copied.data_ptr() != values.data_ptr()
    assert extra["year"].tolist() == [2020] * 4
    ring.writer(0)
    ring.writer(0)  # the third batch comes back to slot 0 while the first is still held
    with pytest.raises(RuntimeError, match="overwrote batch slot 0"):
        ring.take(batch)
    with pytest.raises(ValueError, match="does not fit"):
        ring.writer(0).allocate((20, 2), torch.float32)


def test_batched_dicts_match_per_sample_dicts(root):
    dataset = MiningTiles(root, return_dict=True)
    indices = [17, 0, 7, 7, -1, 13]  # across partitions, a repeat, a negative index
    batch = dataset.loader(len(indices), sampler=indices).__iter__().__next__()
    assert batch["image"].shape == (6, 7, 64, 64) and batch["valid"].dtype == torch.uint8
    for k, i in enumerate(indices):
        sample = dataset[i]
        for key in ("image", "mask", "valid"):
            assert torch.equal(batch[key][k], sample[key])
        for key in ("country", "cluster_id"):
            assert batch[key][k] == sample[key]
        for key in ("year", "tile_ix", "tile_iy"):
            assert int(batch[key][k]) == sample[key]
    with pytest.raises(IndexError):
        dataset.__getitems__([0, len(dataset)])


def test_transforms_apply_per_sample_on_their_own_copy(root):
    def zero_first_band(sample):
        sample["image"][0] = 0  # in place: must not reach the mapping or other samples
        return sample

    dataset = MiningTiles(root, ["ZAF|2020"], transforms=zero_first_band)
    plain = MiningTiles(root, ["ZAF|2020"])
    images, _ = next(iter(dataset.loader(4, sampler=[2, 2, 3, 1])))
    assert images.shape == (4, 7, 64, 64) and not images[:, 0].any()
    assert torch.equal(images[:, 1:], torch.stack([plain[i][0][1:] for i in (2, 2, 3, 1)]))
    assert plain[2][0][0].any() and dataset._fields(0)["features"][2].any()


def small_partition(folder: UPath, count: int) -> None:
    from gnt_assets.core.packed_tensors import TensorField, write_packed

    fields = (TensorField("features", "<f4", (7, 2, 2)), TensorField("labels", "|u1", (1, 2, 2)), TensorField("valid", "|u1", (1, 2, 2)))
    arrays = {f.name: np.full((count, *f.shape), 1, f.dtype) for f in fields}
    rows = {"year": [2020] * count, "cluster_id": [f"cluster-{i}" for i in range(count)], "tile_ix": list(range(count)), "tile_iy": [0] * count}
    write_packed(folder, fields, arrays, rows, {})


def test_workers_get_no_per_tile_index_and_read_rows_lazily(tmp_path):
    import pickle

    small, large = UPath(tmp_path) / "A" / "2020", UPath(tmp_path) / "B" / "2020"
    small_partition(small, 3)
    small_partition(large, 20_000)
    datasets = {name: MiningTiles(folders=[folder], return_dict=True) for name, folder in (("small", small), ("large", large))}
    assert datasets["large"]._indexes == {}  # the parsed rows are not kept, only the mapped table
    pickled = {name: pickle.dumps(dataset) for name, dataset in datasets.items()}
    assert abs(len(pickled["large"]) - len(pickled["small"])) < 64  # only the counts and the table's path differ
    worker = pickle.loads(pickled["large"])
    assert worker._indexes == {} and worker._maps == {} and worker._tiles is None and worker._mapped_rows is None
    assert worker[19_999]["cluster_id"] == "cluster-19999" and worker._indexes == {}  # rows from the mapped table
    table, clusters = worker._mapped_rows
    assert isinstance(table, np.memmap) and isinstance(clusters, np.memmap) and table.itemsize == 14
    assert len(worker.tiles) == 20_000
    small_partition(large, 20_000)  # republished since the dataset was made: its rows describe another file
    stale = pickle.loads(pickled["large"])
    with pytest.raises(PackedTensorError, match="republished"):
        stale[0]
    folder = datasets["large"]._row_table.folder
    del datasets, worker, stale
    import gc

    gc.collect()
    assert not os.path.exists(folder)  # the table goes with the last dataset of the process that made it


def test_pin_memory_needs_an_accelerator(root):
    if torch.cuda.is_available():
        dataset = MiningTiles(root, ["ZAF|2020"], pin_memory=True)
        images, masks = next(iter(dataset.loader(4)))
        assert images.is_pinned() and masks.is_pinned()
    else:
        with pytest.raises(ValueError, match="accelerator"):
            MiningTiles(root, ["ZAF|2020"], pin_memory=True)
