"""Bad input to the zarr and GeoParquet IO managers fails its own partition, names the problem, loses nothing."""

from __future__ import annotations

import dagster as dg
import numpy as np
import pandas as pd
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros

from gnt_assets.core.zarr_regions import open_store
from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
from gnt_assets.io_managers.zarr import ZarrRegionIOManager, ZarrRegionWrite
from gnt_assets.resources.storage import StorageResource

files = dg.DynamicPartitionsDefinition(name="files")


@dg.asset(partitions_def=files, io_manager_key="geoparquet_io_manager")
def file_table(context) -> pd.DataFrame:
    return pd.DataFrame({"file": [context.partition_key]})


def failure_message(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.is_step_failure]
    assert failures, "the run was expected to fail a step"
    error = failures[0].step_failure_data.error
    return error.message + (error.cause.message if error.cause else "")


@dg.asset(partitions_def=files, io_manager_key="zarr_io_manager")
def file_cube(context) -> ZarrRegionWrite:
    return ZarrRegionWrite(data=template().compute().isel(longitude=slice(0, 64)), template=template(), encoding=ENCODING)


def test_partition_keys_cannot_leave_the_table_folder(tmp_path, instance):
    storage = StorageResource(root=str(tmp_path / "root"))
    resources = {"geoparquet_io_manager": GeoParquetIOManager(storage=storage)}
    instance.add_dynamic_partitions("files", ["good.tif", "../../escaped", "sub/dir"])
    for key in ("../../escaped", "sub/dir"):
        result = dg.materialize([file_table], partition_key=key, resources=resources, instance=instance, raise_on_error=False)
        assert not result.success
        assert key in failure_message(result) and "file_table" in failure_message(result)
    assert dg.materialize([file_table], partition_key="good.tif", resources=resources, instance=instance).success
    written = sorted(p.relative_to(tmp_path / "root").as_posix() for p in (tmp_path / "root").rglob("*.parquet"))
    assert written == ["tables/file_table/good.tif.parquet"]


def test_zarr_partition_keys_are_checked_before_writing(tmp_path, instance):
    storage = StorageResource(root=str(tmp_path / "root"))
    instance.add_dynamic_partitions("files", ["../escaped"])
    result = dg.materialize(
        [file_cube], partition_key="../escaped", resources={"zarr_io_manager": ZarrRegionIOManager(storage=storage)},
        instance=instance, raise_on_error=False,
    )
    assert not result.success and "../escaped" in failure_message(result)
    assert not (tmp_path / "root" / "zarr").exists() and not (tmp_path / "escaped").exists()


GEOBOX = GeoBox.from_bbox((0.0, 0.0, 0.128, 0.064), crs="EPSG:4326", resolution=0.001)  # 64 x 128
halves = dg.StaticPartitionsDefinition(["west", "east", "middle"])
COLUMNS = {"west": slice(0, 64), "east": slice(64, 128), "middle": slice(32, 96)}


def template(dtype: str = "float32") -> xr.Dataset:
    return xr_zeros(GEOBOX, dtype=dtype, chunks=(64, 128)).to_dataset(name="elevation")


ENCODING = {"elevation": {"chunks": (32, 32), "shards": (64, 64)}}


@dg.asset(partitions_def=halves, io_manager_key="zarr_io_manager")
def elevation(context) -> ZarrRegionWrite:
    part = template().compute().isel(longitude=COLUMNS[context.partition_key]) + 1.0
    return ZarrRegionWrite(data=part, template=template(), encoding=ENCODING)


@dg.asset(partitions_def=halves, io_manager_key="zarr_io_manager", key="elevation")
def elevation_as_float64(context) -> ZarrRegionWrite:
    part = template("float64").compute().isel(longitude=COLUMNS[context.partition_key])
    return ZarrRegionWrite(data=part, template=template("float64"), encoding=ENCODING)


@dg.asset(partitions_def=halves, io_manager_key="zarr_io_manager", key="elevation")
def elevation_without_template(context) -> xr.Dataset:
    return template().compute().isel(longitude=COLUMNS[context.partition_key])


def test_zarr_refuses_misaligned_regions_other_layouts_and_missing_templates(tmp_path, instance):
    storage = StorageResource(root=str(tmp_path / "root"))
    resources = {"zarr_io_manager": ZarrRegionIOManager(storage=storage)}

    def run(asset, key):
        return dg.materialize([asset], partition_key=key, resources=resources, instance=instance, raise_on_error=False)

    assert run(elevation, "west").success
    middle = run(elevation, "middle")  # half of the west shard, half of the east one
    assert not middle.success and "whole write units" in failure_message(middle)
    other_dtype = run(elevation_as_float64, "east")
    assert not other_dtype.success and "float64" in failure_message(other_dtype)
    plain = run(elevation_without_template, "east")
    assert not plain.success and "ZarrRegionWrite" in failure_message(plain)
    store = open_store(ZarrRegionIOManager(storage=storage).store_path(dg.AssetKey("elevation")))
    values = store.elevation.values
    assert np.all(values[:, :64] == 1.0), "the written west region was changed by a refused write"
    assert np.isnan(values[:, 64:]).all(), "a refused write left data in the east region"
