"""Seamless cells: each cell is loaded and masked with a halo, then cropped, so a cube assembled from
cells equals one mosaic computed over the whole area in one piece, pixel for pixel."""

from datetime import date

import numpy as np
from shapely.geometry import box
from upath import UPath

from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube import VARIABLE, CubeLayout, month_index
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import COLLECTION, DEMO_BBOX
from gnt_assets.sentinel.mosaic import ChunkJob, mosaic_chunk
from gnt_assets.sentinel.stac import SceneQuery

BANDS = {"red": "red", "green": "green", "blue": "blue", "nir": "nir"}
MONTH = "2024-06-01"


def _run(url, layout, chunks, path, halo):
    cube = CubeStore(UPath(path))
    cube.ensure(layout, [MONTH], list(BANDS))
    for chunk in chunks:
        query = SceneQuery(url, COLLECTION, tuple(layout.cell_geobox(chunk).geographic_extent.boundingbox), date(2024, 6, 1))
        result = mosaic_chunk(ChunkJob(chunk=chunk, month=MONTH, query=query, band_assets=BANDS, scl_asset="scl",
                                       layout=layout, cube=cube, halo_px=halo))
        assert result.success and result.scenes == 3
    return cube.open()[VARIABLE].isel(time=month_index(MONTH)).values


def test_cells_equal_one_whole_area_run_pixel_for_pixel(stac_url, tmp_path):
    west, south, east, north = DEMO_BBOX
    cells = named_grid(box(west, south, east, north), "sq", "square", GridSpec(d=480, target_crs="EPSG:32610", res_m=20))
    layout = layout_for(cells)
    chunks = cells["chunk"].tolist()
    assert len(chunks) >= 4  # cells meet along inner edges
    height, width = layout.geobox.shape
    whole = CubeLayout(layout.geobox, layout.chunk_px, {"whole": (slice(0, height), slice(0, width))})
    one_piece = _run(stac_url, whole, ["whole"], tmp_path / "whole.zarr", halo=20)
    from_cells = _run(stac_url, layout, chunks, tmp_path / "cells.zarr", halo=20)
    covered = np.zeros((height, width), bool)
    for chunk in chunks:
        covered[layout.regions[chunk]] = True
    assert np.isfinite(one_piece[covered]).mean() > 0.25  # clear pixels to compare (3 cloudy scenes)
    assert np.array_equal(from_cells[covered], one_piece[covered], equal_nan=True)
    # Without the halo the cut edges change the cloud mask near every inner cell edge (the seam this prevents).
    seams = _run(stac_url, layout, chunks, tmp_path / "no_halo.zarr", halo=0)
    assert not np.array_equal(seams[covered], one_piece[covered], equal_nan=True)
