"""Cube layout invariant (each cell whole chunks, no chunk shared) and two partitions writing at once,
plain zarr and Icechunk, on disk and on the loopback S3 server."""

import threading

import numpy as np
import pytest
from shapely.geometry import box
from upath import UPath

from gnt_assets.core.zarr_regions import ZarrLayoutError
from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube import VARIABLE, axis_months, axis_problems, cube_layout, month_index, region_dataset
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, custom_generator, grid_cells, named_grid

AOI = box(-123.14, 49.26, -123.11, 49.28)
BANDS = ["red", "green", "blue", "nir"]


def test_every_cell_is_whole_chunks_and_no_chunk_is_shared():
    cells = named_grid(AOI, "square", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout = layout_for(cells)
    c = layout.chunk_px
    owned = []
    for chunk in cells["chunk"]:
        rows, cols = layout.regions[chunk]
        assert rows.start % c == 0 and rows.stop % c == 0 and cols.start % c == 0 and cols.stop % c == 0
        assert layout.cell_geobox(chunk).shape == (rows.stop - rows.start, cols.stop - cols.start)
        owned.append(layout.chunks_of(chunk))
    assert sum(map(len, owned)) == len(set().union(*owned))


def test_overlapping_cells_of_a_cell_grid_are_refused():
    import geopandas as gpd

    def overlapping(aoi):
        w, s, e, n = aoi.bounds
        return gpd.GeoDataFrame({"grid_id": ["a", "b"]}, geometry=[box(w, s, e, n), box((w + e) / 2, s, e, n)], crs="EPSG:4326")

    cells = grid_cells(AOI, custom_generator(overlapping), grid_name="mine")
    with pytest.raises(ZarrLayoutError, match="share zarr chunk"):
        cube_layout(cells, "EPSG:32610", 20, 16)


def _two_cells_concurrently(cube: CubeStore):
    cells = named_grid(AOI, "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout = layout_for(cells)
    cube.ensure(layout, ["2024-06-01"], BANDS)
    cube.ensure(layout, ["2024-06-01", "2024-07-01"], BANDS)  # extends time, idempotent
    chunks = cells["chunk"].tolist()[:2]
    barrier, errors = threading.Barrier(2), []

    def write(index, chunk):
        try:
            h, w = layout.cell_geobox(chunk).shape
            barrier.wait()
            cube.write(region_dataset(layout, chunk, "2024-07-01", BANDS, np.full((h, w, 4), 100 + index, "uint16")),
                       layout, chunk, "2024-07-01")
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i, c)) for i, c in enumerate(chunks)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    data = cube.open()[VARIABLE]
    assert [str(t)[:10] for t in data["time"].values] == axis_months(120)  # 2017-01 .. 2026-12, made up front
    assert data.odc.geobox == layout.geobox
    july = month_index("2024-07-01")
    for index, chunk in enumerate(chunks):
        rows, cols = layout.regions[chunk]
        region = {"time": slice(july, july + 1), "y": rows, "x": cols}
        assert cube.status(region).complete
        assert np.allclose(data.isel(region).values, (100 + index) * 1e-4 - 0.1)  # CF-decoded reflectance
    assert np.isnan(data.isel(time=july - 1).values).all()  # June never written: fill


@pytest.mark.parametrize("backend", ["zarr", "icechunk"])
def test_concurrent_partitions_on_disk(tmp_path, backend):
    _two_cells_concurrently(CubeStore(UPath(tmp_path / "cube"), backend))


@pytest.mark.parametrize("backend", ["zarr", "icechunk"])
def test_concurrent_partitions_on_s3(s3_root, backend):
    _two_cells_concurrently(CubeStore(s3_root / "cube", backend))


def test_icechunk_partitions_are_commits_and_a_failed_one_commits_nothing(tmp_path):
    import icechunk

    cube = CubeStore(UPath(tmp_path / "cube.icechunk"), "icechunk")
    cells = named_grid(AOI, "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    cube.ensure(layout, ["2024-06-01"], BANDS)
    h, w = layout.cell_geobox(chunk).shape
    cube.write(region_dataset(layout, chunk, "2024-06-01", BANDS, np.full((h, w, 4), 7, "uint16")), layout, chunk, "2024-06-01")
    wrong_shape = region_dataset(layout, chunk, "2024-06-01", BANDS, np.full((h, w, 4), 9, "uint16")).isel(x=slice(1, None))
    with pytest.raises(Exception):  # noqa: B017, PT011 (zarr or icechunk refuses the shape; which one raises varies by release)
        cube.write(wrong_shape, layout, chunk, "2024-06-01")
    repo = icechunk.Repository.open(icechunk.local_filesystem_storage(str(tmp_path / "cube.icechunk")))
    messages = [snapshot.message for snapshot in repo.ancestry(branch="main")]
    assert messages[0] == f"sentinel 2024-06 {chunk}" and len(messages) == 3  # init, cube, one partition
    rows, cols = layout.regions[chunk]
    assert np.allclose(cube.open()[VARIABLE].isel(time=month_index("2024-06-01"), y=rows, x=cols).values, 7e-4 - 0.1)


def test_month_index_is_the_seeds_rule():
    assert month_index("2017-01-01") == 0 and month_index("2024-06-01") == 12 * 7 + 5
    assert axis_months(14)[-2:] == ["2018-01-01", "2018-02-01"]
    assert axis_problems(np.array(axis_months(30), "datetime64[ns]")) == []
    shuffled = np.array(["2024-07-01", "2017-01-01", "2024-06-01"], "datetime64[ns]")  # the run-order axis of before
    assert "time[0] is 2024-07-01" in axis_problems(shuffled)[0]
    gap = np.array(["2017-01-01", "2017-03-01"], "datetime64[ns]")
    assert axis_problems(gap) and not axis_problems(gap[:1])
    with pytest.raises(ValueError, match="before the cube's first month"):
        month_index("2016-12-01")


def _stored_objects(cube: CubeStore) -> dict[str, bytes]:
    """Every object of the store (plain zarr: the files, region markers included; Icechunk: the zarr keys)."""
    if cube.backend == "zarr":
        fs, root = cube.path.fs, cube.path.path.rstrip("/")
        markers = f"{cube.path.parent.path.rstrip('/')}/.{cube.path.name}.regions"
        found = {}
        for base in (root, markers):
            for key in fs.find(base):
                found[key[len(base) - len(cube.path.name) - 1:]] = fs.cat_file(key)
        return found
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import collect_aiterator, sync

    store = cube._repository().readonly_session(branch="main").store
    keys = collect_aiterator(store.list())
    keys = sync(keys) if hasattr(keys, "__await__") else keys
    return {key: sync(store.get(key, prototype=default_buffer_prototype())).to_bytes() for key in sorted(keys)}


def _months_in_order(cube: CubeStore, months: list[str]) -> None:
    cells = named_grid(AOI, "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout = layout_for(cells)
    for month in months:  # one run per month, as a backfill in that order would do
        cube.ensure(layout, [month], BANDS)
        for index, chunk in enumerate(cells["chunk"].tolist()[:2]):
            h, w = layout.cell_geobox(chunk).shape
            values = np.random.default_rng([month_index(month), index]).integers(1, 12000, (h, w, 4), dtype="uint16")
            cube.write(region_dataset(layout, chunk, month, BANDS, values), layout, chunk, month)


def _out_of_order_equals_in_order(root: UPath, backend: str):
    # A short configured axis (2017) so the newest month grows it: by whole blocks, in one step.
    suffix = "zarr" if backend == "zarr" else "icechunk"
    ordered = CubeStore(root / f"ordered/cube.{suffix}", backend, end_month="2017-12-01")
    shuffled = CubeStore(root / f"shuffled/cube.{suffix}", backend, end_month="2017-12-01")
    _months_in_order(ordered, ["2017-01-01", "2024-06-01", "2024-07-01"])
    _months_in_order(shuffled, ["2024-07-01", "2017-01-01", "2024-06-01"])  # newest, oldest, middle
    times = shuffled.open()["time"].values
    assert len(times) == 96 and axis_problems(times) == []  # 2017-01 .. 2024-12: eight blocks of 12
    ordered_objects, shuffled_objects = _stored_objects(ordered), _stored_objects(shuffled)
    assert sorted(ordered_objects) == sorted(shuffled_objects)
    assert ordered_objects == shuffled_objects  # byte for byte
    assert shuffled.open().identical(ordered.open())
    data = shuffled.open()[VARIABLE]
    assert data.sel(time=slice("2024-06-01", "2024-07-01")).sizes["time"] == 2  # sel by time works


@pytest.mark.parametrize("backend", ["zarr", "icechunk"])
def test_months_out_of_order_equal_an_in_order_run_on_disk(tmp_path, backend):
    _out_of_order_equals_in_order(UPath(tmp_path), backend)


@pytest.mark.parametrize("backend", ["zarr", "icechunk"])
def test_months_out_of_order_equal_an_in_order_run_on_s3(s3_root, backend):
    _out_of_order_equals_in_order(s3_root, backend)


@pytest.mark.parametrize("backend", ["zarr", "icechunk"])
def test_a_cell_is_written_as_stored_without_a_decoded_float_copy(tmp_path, backend):
    import tracemalloc

    cube = CubeStore(UPath(tmp_path / "cube"), backend)
    cells = named_grid(AOI, "sq", "square", GridSpec(d=9600, target_crs="EPSG:32610", res_m=10))  # 960 x 960 px cells
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    cube.ensure(layout, ["2024-06-01"], BANDS)
    h, w = layout.cell_geobox(chunk).shape
    median = np.random.default_rng(0).integers(1, 12000, (h, w, 4), dtype="uint16")
    median[:10] = 0  # fill
    dataset = region_dataset(layout, chunk, "2024-06-01", BANDS, median)
    tracemalloc.start()
    cube.write(dataset, layout, chunk, "2024-06-01")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # decoding to float64 reflectance and encoding back took about 13 times the DN bytes
    assert peak < 4 * median.nbytes, f"{peak / median.nbytes:.1f} x the cell's bytes"
    stored = cube.open()[VARIABLE].isel(time=month_index("2024-06-01"))
    rows, cols = layout.regions[chunk]
    decoded = stored.isel(y=rows, x=cols).values
    np.testing.assert_allclose(decoded, np.where(median == 0, np.nan, median * 1e-4 - 0.1), rtol=1e-6)
    with pytest.raises(ZarrLayoutError, match="stored as uint16"):
        cube.write(dataset.astype("float64"), layout, chunk, "2024-06-01")
