"""No reader takes a torn region: a rewrite killed half-way through the zarr IO manager leaves some chunks
new and some old, and the downstream asset, the CONUS404 day reader and the analysis-ready update refuse it, naming the
partition, until the partition is materialized again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import dagster as dg
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros
from upath import UPath

from gnt_assets.conus404.analysis_ready import update_copy
from gnt_assets.conus404.daily_store import read_day
from gnt_assets.core.zarr_regions import IncompleteRegionError, create_store, open_store, write_region
from gnt_assets.io_managers.zarr import ZarrRegionIOManager, ZarrRegionWrite
from gnt_assets.resources.storage import StorageResource

halves = dg.StaticPartitionsDefinition(["west", "east"])
GEOBOX = GeoBox.from_bbox((0.0, 0.0, 0.128, 0.064), crs="EPSG:4326", resolution=0.001)  # 64 x 128
CHUNK = 32  # each half is 2 x 2 chunks


def template() -> xr.Dataset:
    return xr_zeros(GEOBOX, dtype="float32", chunks=(64, 128)).to_dataset(name="elevation")


def _half(partition: str, value: float, hang: str | None) -> xr.Dataset:
    columns = slice(0, 64) if partition == "west" else slice(64, 128)
    part = template().isel(longitude=columns)

    def fill(block, block_info=None):
        # the last block of the region waits (as a slow or dying writer would) once its siblings are written
        if hang and block_info[None]["chunk-location"] == (1, 1):
            time.sleep(1.0)
            Path(hang).touch()
            time.sleep(600)
        return np.full(block.shape, value, dtype="float32")

    data = da.map_blocks(fill, da.zeros((64, 64), chunks=CHUNK, dtype="float32"), dtype="float32")
    return part.assign(elevation=(part.elevation.dims, data))


def storage_for(root: str, endpoint: str = "") -> StorageResource:
    if endpoint:  # the loopback S3 server
        return StorageResource(root=root, endpoint_url=endpoint, key="testing", secret="testing")
    return StorageResource(root=root)


def elevation_asset(value: float, hang: str | None = None):
    @dg.asset(name="elevation_cube", partitions_def=halves, io_manager_key="zarr_io_manager")
    def elevation_cube(context) -> ZarrRegionWrite:
        return ZarrRegionWrite(data=_half(context.partition_key, value, hang), template=template(),
                               encoding={"elevation": {"chunks": (CHUNK, CHUNK)}})

    return elevation_cube


@dg.asset(partitions_def=halves)
def half_mean(elevation_cube: xr.Dataset) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"mean": float(elevation_cube.elevation.mean())})


def materialize(root: str, assets, partition: str = "west", endpoint: str = "", **kwargs):
    resources = {"zarr_io_manager": ZarrRegionIOManager(storage=storage_for(root, endpoint))}
    return dg.materialize(assets, partition_key=partition, resources=resources, **kwargs)


def rewrite_and_hang(root: str, flag: str, endpoint: str = "") -> None:
    """Run in a child process: rewrite west with 2.0 through the IO manager; it hangs on its last chunk."""
    materialize(root, [elevation_asset(2.0, hang=flag)], endpoint=endpoint)


CHILD = "import sys; from gnt_assets_tests.io_managers_tests.test_torn_reads import rewrite_and_hang; rewrite_and_hang(*sys.argv[1:])"


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_rewrite_killed_through_the_io_manager_is_refused_downstream_naming_the_partition(tmp_path, where, request):
    """On S3 every chunk is one PUT (small objects, never multipart), so the store there is torn the same way."""
    if where == "s3":
        root, endpoint = str(request.getfixturevalue("s3_root")), request.getfixturevalue("s3_endpoint").endpoint_url
    else:
        root, endpoint = str(tmp_path / "root"), ""
    assert materialize(root, [elevation_asset(1.0)], endpoint=endpoint).success
    assert materialize(root, [elevation_asset(1.0)], partition="east", endpoint=endpoint).success

    flag = tmp_path / "hanging"
    worktree = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", CHILD, root, str(flag), endpoint], cwd=worktree,
                             env={**os.environ, "PYTHONPATH": str(worktree)})
    try:
        for _ in range(1200):
            if flag.exists() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert flag.exists(), "the rewrite never reached its last chunk"
        time.sleep(0.5)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()

    # the store really is torn: west holds new chunks beside old ones
    west = open_store(storage_for(root, endpoint).path("zarr", "elevation_cube.zarr")).elevation.isel(longitude=slice(0, 64)).values
    assert {1.0, 2.0} <= set(np.unique(west).tolist())

    result = materialize(root, [elevation_asset(1.0), half_mean], selection=[half_mean], raise_on_error=False, endpoint=endpoint)
    assert not result.success
    failure = result.get_step_failure_events()[0].event_specific_data.error
    assert "IncompleteRegionError" in failure.cls_name or "IncompleteRegionError" in str(failure.cause)
    assert "elevation_cube partition west" in failure.to_string()
    # the other partition was never touched and still reads
    assert materialize(root, [elevation_asset(1.0), half_mean], partition="east", selection=[half_mean], endpoint=endpoint).success

    # materializing the partition again repairs it
    assert materialize(root, [elevation_asset(3.0)], endpoint=endpoint).success
    repaired = materialize(root, [elevation_asset(3.0), half_mean], selection=[half_mean], endpoint=endpoint)
    assert repaired.asset_materializations_for_node("half_mean")[0].metadata["mean"].value == 3.0


def daily_store(path: UPath, days: list[str]) -> None:
    times = pd.to_datetime(days).values.astype("datetime64[ns]")
    empty = xr.Dataset(
        {"T2": (("time", "y", "x"), da.zeros((len(days), 4, 4), chunks=(1, 4, 4), dtype="float32"))},
        coords={"time": times, "y": np.arange(4.0), "x": np.arange(4.0)},
    )
    create_store(path, empty)
    for index in range(len(days)):
        write_region(path, empty.isel(time=[index]).compute() + 270.0 + index)


def test_conus404_readers_refuse_a_day_whose_region_is_not_marked(tmp_path):
    path = UPath(tmp_path) / "conus404_daily.zarr"
    days = ["2020-07-01", "2020-07-02", "2020-07-03"]
    daily_store(path, days)
    assert float(read_day(path, date(2020, 7, 2)).T2.mean()) == 271.0
    # what write_region does first when it rewrites a day: the marker goes, then the chunks
    (marker,) = [p for p in (path.parent / f".{path.name}.regions").iterdir() if p.name.startswith("time1-2")]
    marker.unlink()
    with pytest.raises(IncompleteRegionError, match="conus404_daily day 2020-07-02 is not completely written"):
        read_day(path, date(2020, 7, 2))
    assert float(read_day(path, date(2020, 7, 3)).T2.mean()) == 272.0
    target = UPath(tmp_path) / "analysis_ready.zarr"
    with pytest.raises(IncompleteRegionError, match="2020-07-02"):
        update_copy(path, target, [date.fromisoformat(d) for d in days], set(days), cursor=None, client=None)
    assert not target.exists()


def test_zarr_release_writes_local_objects_atomically(tmp_path, monkeypatch):
    """The pinned zarr (>= 3.1.3) never leaves a half-written chunk under its final name: a write that
    fails part-way leaves the previous object (zarr 3.0-3.1.2 wrote in place)."""
    import zarr
    from zarr.storage import LocalStore, _local

    store = LocalStore(str(tmp_path / "s.zarr"))
    zarr.create_array(store, name="a", shape=(4,), chunks=(4,), dtype="uint8", fill_value=0)[:] = 1
    chunk = tmp_path / "s.zarr" / "a" / "c" / "0"
    before = chunk.read_bytes()
    real_open = Path.open

    def failing_open(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        if "w" in mode or "x" in mode:
            handle.write(b"torn")
            handle.close()
            raise OSError("disk died mid-write")
        return handle

    monkeypatch.setattr(_local.Path, "open", failing_open)
    with pytest.raises(OSError, match="disk died"):
        zarr.open_array(store, path="a")[:] = 2
    monkeypatch.undo()
    assert chunk.read_bytes() == before
    assert [p.name for p in chunk.parent.iterdir()] == ["0"]
