"""Cube layout invariant (each cell whole chunks, no chunk shared) and concurrent region writes on disk and S3."""

import threading

import numpy as np
import pytest
from shapely.geometry import box
from upath import UPath

from gnt_assets.core.zarr_regions import ZarrLayoutError, open_store, region_status
from gnt_assets.sentinel.chunk_runs import ensure_cube, layout_for
from gnt_assets.sentinel.cube import VARIABLE, cube_layout, region_dataset
from gnt_assets.sentinel.grid import GridSpec, grid_cells, majortom_generator, named_grid

AOI = box(-123.14, 49.26, -123.11, 49.28)
BANDS = ["red", "green", "blue", "nir"]


@pytest.mark.parametrize("kind,spec,per_side", [
    ("square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20), 1),
    ("majortom", GridSpec(d=1000, target_crs="EPSG:4326", res_m=20), 3),
])
def test_every_cell_is_whole_chunks_and_no_chunk_is_shared(kind, spec, per_side):
    cells = named_grid(AOI, kind, kind, spec, per_side)
    layout = layout_for(cells)
    c = layout.chunk_px
    owned = []
    for chunk in cells["chunk"]:
        rows, cols = layout.regions[chunk]
        assert rows.start % c == 0 and rows.stop % c == 0 and cols.start % c == 0 and cols.stop % c == 0
        assert layout.cell_geobox(chunk).shape == (rows.stop - rows.start, cols.stop - cols.start)
        owned.append(layout.chunks_of(chunk))
    assert sum(map(len, owned)) == len(set().union(*owned))


def test_overlapping_majortom_cells_are_refused():
    cells = grid_cells(AOI, majortom_generator(1000, overlap=True), grid_name="mt")
    with pytest.raises(ZarrLayoutError, match="share zarr chunk"):
        cube_layout(cells.assign(), "EPSG:4326", 20 / 111_320, 16)


def _two_cells_concurrently(store: UPath):
    cells = named_grid(AOI, "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout = layout_for(cells)
    ensure_cube(store, layout, ["2024-06-01"], BANDS)
    ensure_cube(store, layout, ["2024-06-01", "2024-07-01"], BANDS)  # extends time, idempotent
    chunks = cells["chunk"].tolist()[:2]
    barrier, errors = threading.Barrier(2), []

    def write(index, chunk):
        try:
            h, w = layout.cell_geobox(chunk).shape
            barrier.wait()
            from gnt_assets.core.zarr_regions import write_region
            write_region(store, region_dataset(layout, chunk, "2024-07-01", BANDS, np.full((h, w, 4), 100 + index, "uint16")))
        except Exception as error:  # noqa: BLE001 (collected and asserted below)
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i, c)) for i, c in enumerate(chunks)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    data = open_store(store)[VARIABLE]
    assert [str(t)[:10] for t in data["time"].values] == ["2024-06-01", "2024-07-01"]
    assert data.odc.geobox == layout.geobox
    for index, chunk in enumerate(chunks):
        rows, cols = layout.regions[chunk]
        region = {"time": slice(1, 2), "y": rows, "x": cols}
        assert region_status(store, region).complete
        assert np.all(data.isel(region).values == 100 + index)
    assert np.isnan(data.isel(time=0).values).all()  # June never written: fill


def test_concurrent_partitions_on_disk(tmp_path):
    _two_cells_concurrently(UPath(tmp_path / "cube.zarr"))


def test_concurrent_partitions_on_s3(s3_root):
    _two_cells_concurrently(s3_root / "cube.zarr")
