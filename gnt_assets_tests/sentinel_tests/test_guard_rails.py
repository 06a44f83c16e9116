"""Settings and inputs refused up front: remote workers on a local root, an unnamed layer of many, a cell gone from the grid."""

import geopandas as gpd
import pytest
from shapely.geometry import box

from gnt_assets.sentinel.aoi import AoiError, load_geometry_file
from gnt_assets.sentinel.chunk_runs import GridChangedError, plan_jobs
from gnt_assets.sentinel.definitions import SentinelConfigError, refuse_remote_workers_on_local_storage
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import LocalSentinelStac


@pytest.mark.parametrize(("profile", "env"), [
    ("cloud", {"GNT_STORAGE_ROOT": "/mnt/data"}),  # Coiled by default on the cloud profile
    ("cloud", {"GNT_STORAGE_ROOT": "file:///mnt/data", "GNT_COILED_CLUSTER": "big"}),
    ("local", {"GNT_DASK_SCHEDULER": "tcp://10.0.0.5:8786"}),  # default root ./data
])
def test_remote_workers_with_a_local_storage_root_are_refused(profile, env):
    with pytest.raises(SentinelConfigError, match=r"GNT_STORAGE_ROOT=.*compute is (Coiled|GNT_DASK_SCHEDULER)") as error:
        refuse_remote_workers_on_local_storage(profile, env)
    assert "GNT_COILED_CLUSTER" in str(error.value) or "GNT_DASK_SCHEDULER" in str(error.value)


@pytest.mark.parametrize(("profile", "env"), [
    ("cloud", {"GNT_STORAGE_ROOT": "s3://bucket/gnt"}),
    ("local", {}),
    ("local", {"GNT_DASK_SCHEDULER": "tcp://127.0.0.1:8786", "GNT_STORAGE_ROOT": "/data"}),
    ("local", {"GNT_DASK_SCHEDULER": "tcp://10.0.0.5:8786", "GNT_STORAGE_ROOT": "s3://bucket/gnt"}),
])
def test_workers_that_share_the_storage_root_are_accepted(profile, env):
    refuse_remote_workers_on_local_storage(profile, env)


def test_loading_definitions_with_coiled_and_a_local_root_fails(monkeypatch, tmp_path):
    from gnt_assets.profiles import resources_for_profile
    from gnt_assets.resources import CLOUD_REQUIRED

    for name in CLOUD_REQUIRED:  # an otherwise complete cloud profile, so only the Sentinel guard refuses it
        monkeypatch.setenv(name, "sftp://hpc.example.org/x" if name == "GNT_HPC_TARGET_URL" else "set")
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(tmp_path))
    monkeypatch.delenv("GNT_DASK_SCHEDULER", raising=False)
    with pytest.raises(SentinelConfigError, match="GNT_COILED_CLUSTER"):
        resources_for_profile("cloud")


def test_a_multi_layer_aoi_file_needs_a_layer_name(tmp_path):
    path = tmp_path / "aois.gpkg"
    gpd.GeoDataFrame(geometry=[box(0, 45, 1, 46)], crs="EPSG:4326").to_file(path, layer="alps")
    gpd.GeoDataFrame(geometry=[box(5, 50, 6, 51)], crs="EPSG:4326").to_file(path, layer="ardennes")
    with pytest.raises(AoiError, match=r"2 layers \['alps', 'ardennes'\]; name the one"):
        load_geometry_file(path)
    assert load_geometry_file(path, "ardennes").bounds == (5, 50, 6, 51)


def test_a_cell_gone_from_the_grid_fails_naming_the_grid_change(storage_root):
    from gnt_assets.resources.storage import StorageResource

    grid = named_grid(box(-123.14, 49.26, -123.11, 49.28), "square", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    storage = StorageResource(root=str(storage_root))
    with pytest.raises(GridChangedError, match=r"the grid changed after the partition was added \(grid 'square' now has"):
        plan_jobs(storage, grid, LocalSentinelStac(url="http://127.0.0.1:9"), "http://127.0.0.1:9",
                   [("2024-06-01", "square_1_2")])
