"""The raster pipeline on an S3-compatible storage root: every step that reopens a source from the
path it recorded keeps the root's endpoint (text drops a UPath's options, and the path would go to AWS)."""

import dagster as dg
import numpy as np
import pytest
import rasterio

from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions
from gnt_assets.rasters.assets import grid_assets, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.local import sample_rasters
from gnt_assets.rasters.resources import RasterFolderResource
from gnt_assets.rasters.sensors import raster_folder_sensor


def test_rasters_under_an_s3_root_are_registered_tiled_and_resampled(s3_endpoint, s3_root, monkeypatch):
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(s3_root))
    monkeypatch.setenv("GNT_S3_ENDPOINT_URL", s3_endpoint.endpoint_url)
    resources = resources_for_profile("local")
    resources["raster_folder"] = RasterFolderResource(tile_size=100)
    rasters = resources["storage"].root_path / "rasters"
    sample_rasters(rasters / "incoming", size=150)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("storage", "raster_folder")})
        result = raster_folder_sensor(context)
        assert sorted(r.partition_key for r in result.run_requests) == ["landcover", "species_count", "temperature"]
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        every = [*definitions.defs.assets, *definitions.defs.asset_checks]
        dg.materialize(every, selection=[a.key for a in grid_assets], instance=instance, resources=resources)
        run = dg.materialize(every, selection=[raster_source.key, raster_tiles.key, *(a.key for a in resampled_assets)],
                             partition_key="landcover", instance=instance, resources=resources)
    assert run.success
    checks = run.get_asset_check_evaluations()
    assert checks and all(check.passed for check in checks), [(c.check_name, c.metadata) for c in checks if not c.passed]
    with rasterio.open(str(rasters / "incoming" / "landcover.tif"), opener=rasters.fs) as src:
        band = src.read(1)
    index = read_table(rasters / "tiles" / "landcover" / "index.parquet")
    assert index.valid_count.sum() == np.count_nonzero(band != 255)
    table = read_table(rasters / "resampled" / "square_5km" / "landcover.parquet")
    assert set(table.method) == {"majority", "nearest"} and table.value.notna().any()


@pytest.fixture(autouse=True)
def _no_aws(monkeypatch):
    """Nothing may reach AWS: a request without the loopback endpoint fails at once instead of waiting on the network."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
