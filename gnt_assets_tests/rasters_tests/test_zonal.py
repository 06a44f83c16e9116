"""Our exact coverage zonal statistics against exactextract, in geographic and projected CRSs,
with cells over the raster edge and across nodata holes."""

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
import shapely.affinity
from affine import Affine
from exactextract import exact_extract
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from gnt_assets.rasters.zonal import coverage_weights, point_sample, zonal

CASES = {
    "geographic": ("EPSG:4326", from_origin(10.0, 50.0, 0.01, 0.01)),
    "projected": ("EPSG:32633", from_origin(500000.0, 4000000.0, 30.0, 30.0)),
}


def _raster(tmp_path, crs, transform, data, nodata):
    path = tmp_path / "r.tif"
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1, dtype=data.dtype,
                       crs=crs, transform=transform, nodata=nodata) as dst:
        dst.write(data, 1)
    return path


def _cells(rng, transform, shape, n):
    h, w = shape
    x = transform.c + rng.uniform(-0.1, 1.1, n) * w * transform.a
    y = transform.f + rng.uniform(-0.1, 1.1, n) * h * transform.e
    radius = rng.uniform(0.3, 12, n) * transform.a
    geoms = shapely.buffer(shapely.points(x, y), radius, quad_segs=rng.integers(1, 4))
    # rotate some into irregular quadrilaterals/hexagons, and add a hole to a few
    holes = shapely.buffer(shapely.points(x, y), radius * 0.3, quad_segs=1)
    with_hole = rng.random(n) < 0.2
    geoms = np.where(with_hole, shapely.difference(geoms, holes), geoms)
    return geoms


@pytest.mark.parametrize("case", sorted(CASES))
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=25558)  # geographic: cell 46 ties classes 1 and 4, which the two tools break differently
def test_area_methods_equal_exactextract(tmp_path_factory, case, seed):
    crs, transform = CASES[case]
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(20, 80)), int(rng.integers(20, 80)))
    data = rng.normal(100, 30, shape).astype("float32")
    categories = rng.integers(1, 5, shape).astype("int16")
    r0, c0 = rng.integers(0, shape[0] // 2), rng.integers(0, shape[1] // 2)
    data[r0 : r0 + 8, c0 : c0 + 12] = -9999
    categories[r0 : r0 + 8, c0 : c0 + 12] = -1
    cells = _cells(rng, transform, shape, 60)
    frame = gpd.GeoDataFrame({"id": range(len(cells))}, geometry=cells, crs=crs)
    weights = coverage_weights(cells, transform, shape)
    tmp = tmp_path_factory.mktemp("z")
    for values, nodata, methods in ((data, -9999, ["mean", "sum", "min", "max"]), (categories, -1, ["majority"])):
        path = _raster(tmp, crs, transform, values, nodata)
        reference = exact_extract(str(path), frame, methods, output="pandas")
        for method in methods:
            ours = zonal(weights, values, values != nodata, method).value
            ref = reference[method].to_numpy(dtype=float)
            defined = np.isfinite(ref)
            assert np.array_equal(np.isfinite(ours), defined), method
            if method == "majority":  # a tie (equal coverage, up to rounding) may go either way
                ours, ref = _untie(weights, values, values != nodata, ours, ref)
            np.testing.assert_allclose(ours[defined], ref[defined], rtol=1e-6, atol=1e-9, err_msg=method)


def _untie(weights, values, valid, ours, ref):
    """Where the two classes' coverages tie, both tools' answers must be among the tied classes; they are then
    counted as agreeing."""
    classes = np.unique(values[valid])
    coverage = np.stack([zonal(weights, (values == k).astype("float64"), valid, "sum").value for k in classes])
    best = np.nanmax(coverage, axis=0)
    tied = np.abs(coverage - best) <= 1e-9 * np.maximum(best, 1)
    index = {k: i for i, k in enumerate(classes)}
    for cell in np.flatnonzero(np.isfinite(ref) & (ours != ref)):
        assert tied[index[ours[cell]], cell] and tied[index[ref[cell]], cell], f"majority of cell {cell}: no tie"
    return ours, np.where(np.isfinite(ref) & (ours != ref), ours, ref)


def _dense(weights):
    """The run-length coverage as a dense (cells x pixels) array."""
    out = np.zeros((weights.cells, weights.shape[0] * weights.shape[1]))
    np.add.at(out, (weights.pixel_cell, weights.pixel), weights.pixel_weight)
    for cell, start, stop, weight in zip(weights.run_cell, weights.run_start, weights.run_stop, weights.run_weight, strict=True):
        out[cell, start:stop] += weight
    return out


def _exact(cells, shape):
    """Each pixel's box intersected with each cell (pixel size 1, origin at the top left)."""
    rows, cols = np.divmod(np.arange(shape[0] * shape[1]), shape[1])
    boxes = shapely.box(cols, shape[0] - rows - 1, cols + 1, shape[0] - rows)
    return shapely.area(shapely.intersection(np.asarray(cells, dtype=object)[:, None], boxes[None, :]))


def test_coverage_sums_to_cell_area_inside_the_raster():
    transform = from_origin(0, 100, 1, 1)
    hexagon = shapely.buffer(shapely.Point(50.3, 50.7), 10.2, quad_segs=1)
    square = shapely.box(10.25, 10.5, 13.75, 12.5)
    weights = coverage_weights([hexagon, square], transform, (100, 100))
    dense = _dense(weights)
    np.testing.assert_allclose(dense.sum(axis=1), [hexagon.area, square.area], rtol=1e-12)
    assert dense.max() <= 1.0
    # the interior is runs: far fewer pixels are listed one by one than are covered
    assert len(weights.pixel) < 0.5 * weights.covered_pixels


def test_pixel_indices_are_int64_past_2_31_pixels():
    """A raster of 2.5e9 pixels (never allocated: coverage is per cell) keeps int64 indices, and a cell at its
    far corner covers the same pixels as in a small raster, shifted; under 2**31 pixels they are int32."""
    hexagon = shapely.buffer(shapely.Point(4.3, 5.6), 3.2, quad_segs=1)
    small = coverage_weights([hexagon], from_origin(0, 10, 1, 1), (10, 10))
    far = coverage_weights([shapely.affinity.translate(hexagon, 49_990, 0)], from_origin(0, 50_000, 1, 1), (50_000, 50_000))
    assert small.pixel.dtype == small.run_start.dtype == np.int32 and far.pixel.dtype == far.run_start.dtype == np.int64
    rows, cols = np.divmod(far.pixel, 50_000)
    assert far.pixel.min() > 2**31 and np.array_equal((rows - 49_990) * 10 + cols - 49_990, small.pixel)
    np.testing.assert_allclose(far.pixel_weight, small.pixel_weight, atol=1e-9)  # coordinates near 50,000 round more
    assert np.array_equal(far.run_stop - far.run_start, small.run_stop - small.run_start)


def _lattice_polygon(rng):
    """A convex hull or box with vertices on a quarter-pixel lattice: many vertices and whole edges
    fall exactly on pixel lines, where the row and column cuts meet."""
    points = shapely.multipoints(rng.integers(-4, 48, (int(rng.integers(3, 9)), 2)) / 4.0)
    return shapely.buffer(shapely.convex_hull(points), 0) if rng.random() < 0.5 else shapely.envelope(points)


def _random_cell(rng):
    """A polygon, a polygon with holes or a multipolygon (parts may touch) over a 12 x 10 raster and beyond."""
    kind = rng.integers(0, 4)
    if kind == 0:
        return _lattice_polygon(rng)
    if kind == 1:  # off-lattice star-shaped polygon (not convex)
        centre = rng.uniform(-2, 14, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 12))))
        radius = rng.uniform(0.2, 7, len(angles))
        return shapely.make_valid(shapely.Polygon(np.c_[centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)]))
    if kind == 2:  # holes
        outer = shapely.buffer(shapely.Point(rng.uniform(0, 10, 2)), rng.uniform(2, 7), quad_segs=int(rng.integers(1, 5)))
        holes = shapely.union_all([shapely.buffer(shapely.Point(rng.uniform(0, 10, 2)), rng.uniform(0.3, 2), quad_segs=1) for _ in range(3)])
        return shapely.difference(outer, holes)
    return shapely.union_all([_lattice_polygon(rng) for _ in range(3)])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), split=st.integers(1, 11))
def test_coverage_is_each_pixels_intersection_area_whatever_the_blocks(seed, split):
    """Every pixel's weight is the area of its box intersected with the cell, for polygons with
    and without holes and multipolygons, and a split of the raster's rows into two blocks (each
    swept on its own, as ``resample`` does) covers each pixel as the whole raster does."""
    rng = np.random.default_rng(seed)
    shape = (12, 10)
    transform = from_origin(0, 12, 1, 1)
    cells = np.array([_random_cell(rng) for _ in range(6)], dtype=object)
    cells = cells[shapely.area(cells) > 0]
    assume(len(cells) > 0)
    expected = _exact(cells, shape)
    np.testing.assert_allclose(_dense(coverage_weights(cells, transform, shape)), expected, atol=1e-12)
    top = coverage_weights(cells, transform, (split, shape[1]))
    bottom = coverage_weights(cells, transform @ Affine.translation(0, split), (shape[0] - split, shape[1]))
    np.testing.assert_allclose(np.hstack([_dense(top), _dense(bottom)]), expected, atol=1e-12)


def test_cells_outside_the_raster_have_no_valid_fraction():
    transform = from_origin(0, 10, 1, 1)
    outside = shapely.box(20, 20, 22, 22)
    half = shapely.box(-1, 4, 1, 6)  # half off the left edge
    weights = coverage_weights([outside, half], transform, (10, 10))
    data = np.ones((10, 10))
    result = zonal(weights, data, np.ones_like(data, bool), "mean")
    assert np.isnan(result.value[0]) and result.valid_fraction[0] == 0
    assert result.value[1] == 1 and result.valid_fraction[1] == pytest.approx(0.5)


def test_point_methods_sample_cell_centres():
    transform = from_origin(0, 4, 1, 1)
    data = np.arange(16, dtype=float).reshape(4, 4)
    valid = np.ones_like(data, bool)
    valid[0, 0] = False
    centres = np.array([[1.5, 2.5], [2.0, 2.0], [0.5, 3.5]])
    assert point_sample(centres, transform, data, valid, "nearest").value[0] == data[1, 1]
    assert point_sample(centres, transform, data, valid, "bilinear").value[1] == pytest.approx(data[1:3, 1:3].mean())
    assert np.isnan(point_sample(centres, transform, data, valid, "bilinear").value[2])  # touches the nodata pixel
    # Keys' cubic reproduces a linear field exactly; the nodata corner is renormalised away
    assert point_sample(centres, transform, data, np.ones_like(valid), "cubic").value[1] == pytest.approx(data[1:3, 1:3].mean(), rel=1e-12)
    assert point_sample(centres, transform, data, valid, "cubic").value[1] == pytest.approx(data[1:3, 1:3].mean(), rel=1e-2)
