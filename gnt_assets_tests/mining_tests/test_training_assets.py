"""Training tiles and HPC transfer materialized through Dagster, with their checks."""

import dagster as dg
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from upath import UPath

from gnt_assets.core.packed_tensors import open_packed
from gnt_assets.io_managers.mmap_tensors import tensor_folder
from gnt_assets.mining.dataset import ASSET_KEY, MiningTiles
from gnt_assets.mining.transfer import file_digest
from gnt_assets_tests.mining_tests import training_fixtures as fx

PARTITIONS = ["ZAF|2020", "NAM|2021"]


@pytest.fixture(scope="module")
def module_instance():
    with dg.instance_for_test() as shared:
        yield shared


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, module_instance):
    """Materialized once for the module (the tests below only read it, or re-run it safely)."""
    base = UPath(tmp_path_factory.mktemp("pipeline"))
    resources = fx.mining_ii_resources(base / "storage", base / "hpc")
    results = fx.materialize_pipeline(module_instance, resources, PARTITIONS)
    return base / "storage", base / "hpc", results


def test_tiles_and_transfer_materialize_with_metadata_and_checks(pipeline):
    storage_root, hpc_root, results = pipeline
    for partition, result in zip(PARTITIONS, results, strict=False):
        assert result.success
        tiles = result.asset_materializations_for_node("mining_training_tiles")[0].metadata
        assert tiles["tiles"].value == 6 and tiles["files"].value == 2 and tiles["bytes"].value > 6 * 122880
        assert tiles["nan_only_tiles"].value == [[fx.FIXTURE_IX0[partition[:3]] + 3, fx.IY0 + 2]]
        assert "data:image/png;base64," in tiles["tile_preview"].value and tiles["shape"].value == "3 x 64 x 64"  # the tile itself (drawn x4)
        assert "red outline: mine polygons (label pixels)" in tiles["tile_preview"].value
        transfer = result.asset_materializations_for_node("mining_hpc_transfer")[0].metadata
        assert transfer["files"].value == 2 and transfer["copied_files"].value == 2
        checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
        assert checks["training_tiles_match_clusters"].passed and checks["hpc_copy_matches_source"].passed
        # The NaN-only tile is a soft finding.
        assert not checks["training_tiles_have_data_and_labels"].passed
        assert checks["training_tiles_have_data_and_labels"].severity == dg.AssetCheckSeverity.WARN
        index = open_packed(tensor_folder(storage_root, ASSET_KEY, partition))
        country, year = partition.split("|")
        assert file_digest(hpc_root / country / year / index.data_file) == (index.data_bytes, index.sha256)


def test_rerun_is_safe_and_transfer_resumes(pipeline, module_instance):
    instance = module_instance
    storage_root, hpc_root, _ = pipeline
    resources = fx.mining_ii_resources(storage_root, hpc_root)
    again = fx.materialize_pipeline(instance, resources, ["ZAF|2020"], selection=["mining_training_tiles", "mining_hpc_transfer"])[0]
    transfer = again.asset_materializations_for_node("mining_hpc_transfer")[0].metadata
    # Tiles were rewritten (a new data file version), so the data file is copied and the stale one removed.
    assert transfer["copied_files"].value == 2
    assert len(list((hpc_root / "ZAF" / "2020").iterdir())) == 2
    again = fx.materialize_pipeline(instance, resources, ["ZAF|2020"], selection=["mining_hpc_transfer"])[0]
    assert again.asset_materializations_for_node("mining_hpc_transfer")[0].metadata["copied_files"].value == 0


def test_missing_region_fails_only_its_partition(pipeline, module_instance):
    instance = module_instance
    storage_root, hpc_root, _ = pipeline
    resources = fx.mining_ii_resources(storage_root, hpc_root)
    from gnt_assets.mining.training_assets import mining_training_tiles

    result = dg.materialize(
        [*fx.STANDINS, mining_training_tiles], selection=["mining_training_tiles"],
        partition_key=dg.MultiPartitionKey({"country": "ZAF", "year": "2019"}),
        instance=instance, resources=resources, raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "ZAF|2019: no zarr region" in failure.step_failure_data.error.to_string()
    assert open_packed(tensor_folder(storage_root, ASSET_KEY, "ZAF|2020")).count == 6


def test_dataloader_with_two_workers_over_materialized_tiles(pipeline):
    storage_root, _, _ = pipeline
    polygons = fx.mine_polygons()
    dataset = MiningTiles(storage_root, return_dict=True)
    assert len(dataset) == 12
    import shapely

    union = shapely.union_all(polygons.geometry.values)
    for batch in DataLoader(dataset, batch_size=5, num_workers=2):
        assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (7, 64, 64)
        assert batch["mask"].dtype == torch.uint8 and batch["mask"].shape[1:] == (1, 64, 64)
        for mask, ix, iy in zip(batch["mask"], batch["tile_ix"], batch["tile_iy"], strict=False):
            coords = fx.world_tile(int(ix), int(iy)).coordinates
            lon, lat = np.meshgrid(coords["longitude"].values, coords["latitude"].values)
            np.testing.assert_array_equal(mask[0].numpy(), shapely.contains_xy(union, lon, lat))
