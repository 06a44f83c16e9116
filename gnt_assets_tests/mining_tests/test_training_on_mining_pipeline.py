"""Training tiles from Mining I's real pipeline (local Earth Engine and Drive), read by a 2-worker DataLoader."""

import dagster as dg
import numpy as np
import shapely
import torch
from torch.utils.data import DataLoader

from gnt_assets.core.worldgrid import world_tile
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
from gnt_assets.mining.dataset import MiningTiles
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.janitor_checks import (
    hpc_copy_matches_source,
    training_tiles_have_data_and_labels,
    training_tiles_match_clusters,
)
from gnt_assets.mining.regions import region_path, tile_array
from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles
from gnt_assets_tests.mining_tests.mining_fixtures import ASSETS, SMALL_CLUSTERS, mining_resources, sensor_tick

PARTITION = dg.MultiPartitionKey({"country": "BWA", "year": "2020"})


def test_dataloader_with_two_workers_over_tiles_of_the_mining_pipeline(storage_root, tmp_path, instance):
    resources = {
        **mining_resources(storage_root),
        "mmap_tensor_io_manager": MmapTensorIOManager(storage=mining_resources(storage_root)["storage"]),
        "hpc": HPCTargetResource(url=str(tmp_path / "hpc")),
    }
    everything = [*ASSETS, mining_training_tiles, mining_hpc_transfer, training_tiles_match_clusters, training_tiles_have_data_and_labels, hpc_copy_matches_source]

    def run(selection, partition=None):
        return dg.materialize(
            everything, selection=selection, partition_key=partition, instance=instance, resources=resources,
            run_config=SMALL_CLUSTERS if "mining_clusters" in selection else None,
        )

    run(["mine_polygons"])
    run(["mining_clusters"], "BWA")
    run(["landsat_exports"], PARTITION)
    cursor = sensor_tick(instance, resources).cursor
    sensor_tick(instance, resources, cursor)
    run(["landsat_regions"], PARTITION)
    result = run(["mining_training_tiles", "mining_hpc_transfer"], PARTITION)
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["training_tiles_match_clusters"] and checks["hpc_copy_matches_source"]
    metadata = result.asset_materializations_for_node("mining_training_tiles")[0].metadata
    assert metadata["tiles"].value > 0 and metadata["bytes"].value > 0 and "tile_preview" in metadata

    mines = shapely.union_all(read_table(storage_root / "tables" / "mine_polygons.parquet").geometry.values)
    store = region_path(storage_root, "BWA", "2020")
    dataset = MiningTiles(storage_root, ["BWA|2020"], return_dict=True)
    assert len(dataset) == metadata["tiles"].value
    seen, labelled = 0, 0
    for batch in DataLoader(dataset, batch_size=8, num_workers=2, shuffle=True):
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (7, 64, 64)
        assert batch["mask"].dtype == torch.uint8 and batch["mask"].shape[1:] == (1, 64, 64)
        for image, mask, valid, ix, iy in zip(batch["image"], batch["mask"], batch["valid"], batch["tile_ix"], batch["tile_iy"], strict=False):
            coords = world_tile(int(ix), int(iy)).coordinates
            lon, lat = np.meshgrid(coords["longitude"].values, coords["latitude"].values)
            np.testing.assert_array_equal(mask[0].numpy(), shapely.contains_xy(mines, lon, lat))
            pixels = tile_array(store, int(ix), int(iy))
            np.testing.assert_array_equal(image.numpy(), np.nan_to_num(pixels, nan=0.0))
            np.testing.assert_array_equal(valid[0].numpy(), np.isfinite(pixels).all(axis=0))
            labelled += int(mask.sum() > 0)
            seen += 1
    assert seen == len(dataset) and labelled > 0
