"""Zarr-region and GeoParquet IO managers, materialized through Dagster on local disk and S3."""

from __future__ import annotations

import dagster as dg
import geopandas as gpd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
import shapely
import xarray as xr
from dagster_pandera import pandera_schema_to_dagster_type
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros

from gnt_assets.core.zarr_regions import open_store
from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
from gnt_assets.io_managers.zarr import ZarrRegionIOManager, ZarrRegionWrite
from gnt_assets.resources.storage import StorageResource

halves = dg.StaticPartitionsDefinition(["west", "east"])
GEOBOX = GeoBox.from_bbox((0.0, 0.0, 0.128, 0.064), crs="EPSG:4326", resolution=0.001)


def cube_template() -> xr.Dataset:
    layer = xr_zeros(GEOBOX, dtype="float32", chunks=(64, 128))
    return layer.to_dataset(name="elevation").assign(elevation=lambda d: d.elevation.assign_attrs(units="m"))


@dg.asset(partitions_def=halves, io_manager_key="zarr_io_manager")
def elevation_cube(context) -> ZarrRegionWrite:
    full = cube_template().compute()
    columns = slice(0, 64) if context.partition_key == "west" else slice(64, 128)
    part = full.isel(longitude=columns)
    return ZarrRegionWrite(
        data=part + (1.0 if context.partition_key == "west" else 2.0),
        template=cube_template(),
        encoding={"elevation": {"chunks": (32, 32), "shards": (64, 64)}},
    )


@dg.asset(partitions_def=halves)
def half_mean(elevation_cube: xr.Dataset) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"mean": float(elevation_cube.elevation.mean()), "width": elevation_cube.sizes["longitude"]})


@dg.asset
def whole_cube(elevation_cube: xr.Dataset) -> dg.MaterializeResult:
    """Unpartitioned downstream: gets both halves' regions, joined along longitude."""
    values = elevation_cube.elevation
    return dg.MaterializeResult(metadata={"width": values.sizes["longitude"], "west": float(values[:, :64].mean()), "east": float(values[:, 64:].mean())})


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path) -> StorageResource:
    if request.param == "local":
        return StorageResource(root=str(tmp_path / "root"))
    endpoint = request.getfixturevalue("s3_endpoint")
    return StorageResource(root=f"{request.getfixturevalue('s3_root')}", endpoint_url=endpoint.endpoint_url, key="testing", secret="testing")


def test_partitions_write_their_own_region_and_read_it_back(storage, instance):
    resources = {"zarr_io_manager": ZarrRegionIOManager(storage=storage), "storage": storage}
    for key in ("east", "west", "east"):  # re-running a partition is safe
        result = dg.materialize([elevation_cube, half_mean], partition_key=key, resources=resources, instance=instance)
        assert result.success
    means = {
        m.partition: m.metadata["mean"].value
        for m in (r.asset_materialization for r in instance.fetch_materializations(dg.AssetKey("half_mean"), limit=10).records)
    }
    assert means == {"west": 1.0, "east": 2.0}
    cube = open_store(ZarrRegionIOManager(storage=storage).store_path(dg.AssetKey("elevation_cube")))
    assert cube.odc.geobox == GEOBOX
    latest = instance.fetch_materializations(dg.AssetKey("elevation_cube"), limit=1).records[0].asset_materialization
    assert latest.metadata["files"].value == 1  # a half is one 64 x 64 shard
    assert 0 < latest.metadata["bytes"].value < 64 * 64 * 4 <= latest.metadata["uncompressed_bytes"].value  # stored, compressed

    both = dg.materialize([elevation_cube, whole_cube], selection=["whole_cube"], resources=resources, instance=instance)
    metadata = both.asset_materializations_for_node("whole_cube")[0].metadata
    assert (metadata["width"].value, metadata["west"].value, metadata["east"].value) == (128, 1.0, 2.0)
    assert np.all(cube.elevation.values[:, :64] == 1.0) and np.all(cube.elevation.values[:, 64:] == 2.0)


MINES = pa.DataFrameSchema(
    {"mine_id": pa.Column(int, unique=True), "area_km2": pa.Column(float, pa.Check.ge(0))}, name="mines"
)
MineTable = pandera_schema_to_dagster_type(MINES)
countries = dg.StaticPartitionsDefinition(["ZAF", "PER"])
years = dg.StaticPartitionsDefinition(["2019", "2020"])


def mines_frame(area: float) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"mine_id": [1, 2], "area_km2": [area, 1.0]}, geometry=[shapely.box(0, 0, 1, 1), shapely.box(2, 2, 3, 3)], crs="EPSG:4326"
    )


@dg.asset(partitions_def=dg.MultiPartitionsDefinition({"country": countries, "year": years}), io_manager_key="geoparquet_io_manager", dagster_type=MineTable)
def mines(context) -> gpd.GeoDataFrame:
    return mines_frame(-5.0 if context.partition_key.keys_by_dimension["country"] == "PER" else 2.5)


@dg.asset(ins={"mines": dg.AssetIn(metadata={"allow_missing_partitions": True})})
def mine_count(mines: dict[str, pd.DataFrame]) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"partitions": len(mines), "crs": next(iter(mines.values())).crs.to_string()})


def test_geoparquet_validates_schema_and_loads_every_partition(storage, instance):
    resources = {"geoparquet_io_manager": GeoParquetIOManager(storage=storage)}
    ok = dg.materialize([mines], partition_key=dg.MultiPartitionKey({"country": "ZAF", "year": "2020"}), resources=resources, instance=instance)
    assert ok.success
    bad = dg.materialize([mines], partition_key=dg.MultiPartitionKey({"country": "PER", "year": "2020"}), resources=resources, instance=instance, raise_on_error=False)
    assert not bad.success  # negative area fails the pandera type before anything is written
    dg.materialize([mines], partition_key=dg.MultiPartitionKey({"country": "ZAF", "year": "2019"}), resources=resources, instance=instance)
    result = dg.materialize([mines, mine_count], selection=[mine_count], resources=resources, instance=instance)
    metadata = result.asset_materializations_for_node("mine_count")[0].metadata
    assert metadata["partitions"].value == 2 and metadata["crs"].value == "EPSG:4326"
