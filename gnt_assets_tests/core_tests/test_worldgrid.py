"""The world grid: tiles are exact sub-grids, every point is in one tile, boxes are covered exactly."""

from __future__ import annotations

import pytest
from affine import Affine
from hypothesis import example, given, settings
from hypothesis import strategies as st
from odc.geo.geobox import GeoboxTiles

from gnt_assets.core.worldgrid import (
    RESOLUTION,
    TILE_COLUMNS,
    TILE_ROWS,
    TILE_SIZE,
    WORLD,
    WorldGridError,
    region_geoboxes,
    tile_index_in,
    tile_of_point,
    tiles_covering,
    world_tile,
)

FAST = settings(max_examples=200, deadline=None)
ix_values = st.integers(0, TILE_COLUMNS - 1)
iy_values = st.integers(0, TILE_ROWS - 1)
longitudes = st.floats(-180, 179.9999, allow_nan=False)
latitudes = st.floats(-89.99, 90, allow_nan=False)


def test_world_matches_the_seed():
    assert (WORLD.shape.y, WORLD.shape.x) == (667916, 1335832)
    assert WORLD.resolution.x == RESOLUTION


@FAST
@given(ix_values, iy_values)
def test_tile_is_an_exact_64_pixel_subgrid_and_round_trips(ix, iy):
    tile = world_tile(ix, iy)
    assert (tile.shape.y, tile.shape.x) == (TILE_SIZE, TILE_SIZE)
    assert tile.affine == WORLD.affine @ Affine.translation(ix * TILE_SIZE, iy * TILE_SIZE)
    centre_lon, centre_lat = tile.affine @ (TILE_SIZE / 2, TILE_SIZE / 2)
    if centre_lat >= -90 and centre_lon < 180:  # the last column reaches past 180 E, where longitudes wrap
        assert tile_of_point(centre_lon, centre_lat) == (ix, iy)


def _inside(tile, lon, lat, tol=1e-9):
    left, bottom, right, top = tile.extent.boundingbox
    return left - tol <= lon < right + tol and bottom - tol < lat <= top + tol


@FAST
@given(longitudes, latitudes)
def test_every_point_lies_in_exactly_one_tile(lon, lat):
    ix, iy = tile_of_point(lon, lat)
    assert _inside(world_tile(ix, iy), lon, lat)
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        nx, ny = ix + dx, iy + dy
        if 0 <= nx < TILE_COLUMNS and 0 <= ny < TILE_ROWS:
            assert not _inside(world_tile(nx, ny), lon, lat, tol=-1e-9)


boxes = st.tuples(
    st.floats(-179.5, 179.0), st.floats(-80, 79.0), st.floats(0.0001, 0.5), st.floats(0.0001, 0.5)
).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))


@FAST
@given(boxes)
def test_tiles_of_a_box_cover_it_without_gaps_or_overlaps(box):
    tiles = tiles_covering(box)
    assert len(tiles) == len(set(tiles))
    columns = sorted({ix for ix, _ in tiles})
    rows = sorted({iy for _, iy in tiles})
    assert len(tiles) == len(columns) * len(rows)  # a full rectangle: no gaps
    assert columns == list(range(columns[0], columns[-1] + 1)) and rows == list(range(rows[0], rows[-1] + 1))
    (region,) = region_geoboxes(box)
    left, bottom, right, top = region.extent.boundingbox
    assert left <= box[0] + 1e-9 and right >= box[2] - 1e-9 and bottom <= box[1] + 1e-9 and top >= box[3] - 1e-9
    # minimal: dropping an edge column or row would leave part of the box uncovered
    assert world_tile(columns[0], rows[0]).extent.boundingbox.right > box[0]
    assert world_tile(columns[-1], rows[-1]).extent.boundingbox.left < box[2]
    assert [(ix, iy) for ix, iy, _ in tile_index_in(region)] == sorted(tiles, key=lambda t: (t[1], t[0]))


def test_box_across_the_antimeridian_takes_tiles_from_both_edges():
    tiles = tiles_covering((179.99, -17.0, -179.99, -16.99))
    columns = {ix for ix, _ in tiles}
    assert 0 in columns and TILE_COLUMNS - 1 in columns
    assert len(region_geoboxes((179.99, -17.0, -179.99, -16.99))) == 2


def test_poles_and_edges_stay_on_the_grid():
    assert tile_of_point(-180, 90) == (0, 0)
    assert tile_of_point(180, -90) == (0, TILE_ROWS - 1)
    with pytest.raises(WorldGridError, match="outside the grid"):
        world_tile(TILE_COLUMNS, 0)
    with pytest.raises(WorldGridError, match="latitude"):
        tile_of_point(0, 91)


WORLD_TILES = GeoboxTiles(WORLD, (TILE_SIZE, TILE_SIZE))


@FAST
@given(ix_values, iy_values)
@example(TILE_COLUMNS - 1, TILE_ROWS - 1)
@example(0, 0)
def test_tiles_agree_with_odc_geo_geobox_tiles(ix, iy):
    """odc-geo's tiling of the world GeoBox is the reference; only the last column/row, which odc-geo crops at
    the world's edge, is kept whole by us (same origin, 64 x 64)."""
    reference, ours = WORLD_TILES[iy, ix], world_tile(ix, iy)
    assert reference.affine == ours.affine and reference.crs == ours.crs
    if ix < TILE_COLUMNS - 1 and iy < TILE_ROWS - 1:
        assert reference == ours
    else:
        assert reference.shape.x <= TILE_SIZE and reference.shape.y <= TILE_SIZE
