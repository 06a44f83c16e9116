"""The grid registry: H3 resolution from metres, square cell ids, antimeridian-safe hexagons, cell centres."""

import h3
import numpy as np
import pytest
import shapely

from gnt_assets.rasters import grids


@pytest.mark.parametrize("metres", [100, 1000, 5000, 20000])
def test_h3_resolution_is_the_nearest_average_size(metres):
    res = grids.h3_resolution(metres)
    size = lambda r: np.sqrt(h3.average_hexagon_area(r, unit="m^2"))  # noqa: E731
    neighbours = [r for r in (res - 1, res + 1) if 0 <= r <= 15]
    assert all(abs(np.log(size(res) / metres)) <= abs(np.log(size(r) / metres)) for r in neighbours)


def test_square_cells_are_numbered_from_the_global_corner():
    cells = grids.square_cells((10.0, 45.0, 10.2, 45.2), 5000)
    assert cells.cell_id.str.match(r"^C5000_\d{5}_\d{5}$").all() and cells.cell_id.is_unique
    first = cells.iloc[0]
    left, _, _, top = first.geometry.bounds
    assert left == pytest.approx(grids.EASE_XMIN + first.i * 5000) and top == pytest.approx(grids.EASE_YMAX - first.j * 5000)
    again = grids.square_cells((10.05, 45.05, 10.1, 45.1), 5000)
    assert set(again.cell_id) <= set(cells.cell_id)  # ids do not depend on the study area


def test_hexagons_across_the_antimeridian_are_split_not_wrapped():
    cells = grids.hex_cells((179.5, -17.5, -179.5, -16.5), 20000)  # lon_min > lon_max: Fiji
    parts = shapely.get_parts(cells.geometry.values)
    lon0, _, lon1, _ = shapely.bounds(parts).T
    assert cells.geometry.is_valid.all() and (lon0 >= -180).all() and (lon1 <= 180).all()
    assert (lon1 - lon0).max() < 1.0  # no part spans the globe
    split = cells[cells.geometry.geom_type == "MultiPolygon"]
    assert len(split) > 0
    for geom in split.geometry:  # one part ends at +180, the other starts at -180
        bounds = sorted(part.bounds for part in shapely.get_parts(geom))
        assert bounds[0][0] == pytest.approx(-180) and bounds[-1][2] == pytest.approx(180)
    assert cells.cell_id.is_unique


def test_cell_centres_are_h3_centres_and_square_centroids():
    hexes = grids.hex_cells((10.0, 45.0, 10.3, 45.3), 5000)
    centres = grids.cell_centres(hexes)
    lat, lon = h3.cell_to_latlng(hexes.cell_id.iloc[0])
    assert (centres.iloc[0].x, centres.iloc[0].y) == pytest.approx((lon, lat))
    assert shapely.contains(hexes.geometry.values, centres.values).all()
    squares = grids.square_cells((10.0, 45.0, 10.3, 45.3), 5000)
    assert shapely.equals(grids.cell_centres(squares).values, squares.geometry.centroid.values).all()
