"""Exact coverage fractions of polygons over a pixel grid, and zonal statistics from them.

Coverage is computed with Green's theorem, as exact-area font rasterizers do: every
polygon edge is cut at pixel boundaries, each piece adds its signed height to the
pixel it lies in (split by where its midpoint sits) and a running sum along the row
turns those contributions into the covered area of every pixel. No polygon/box
intersections are formed, all cells of a batch are handled by the same numpy calls,
and the result is a sparse (cells x pixels) weight matrix that every band, method
and raster on the same pixel grid reuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import shapely
from affine import Affine

AREA_METHODS = ("mean", "sum", "min", "max", "majority")
POINT_METHODS = ("nearest", "bilinear", "cubic")
METHODS = AREA_METHODS + POINT_METHODS
BATCH_ELEMENTS = 8_000_000


@dataclass(frozen=True)
class CoverageWeights:
    """Sparse coverage fractions (cells x pixels, row-major pixel index) and each cell's area in pixels."""

    matrix: sp.csr_matrix
    cell_area: np.ndarray
    shape: tuple[int, int]


def _pixel_rings(geoms: np.ndarray, transform: Affine):
    """Ring vertices in pixel coordinates, each ring's cell and the sign that makes
    exteriors add area and holes remove it."""
    if np.all((shapely.get_type_id(geoms) == shapely.GeometryType.POLYGON) & (shapely.get_num_interior_rings(geoms) == 0)):
        # Plain polygons (H3 and square cells): each cell is one exterior ring.
        coords, ring_of_vertex = shapely.get_coordinates(geoms, return_index=True)
        rings = len(geoms)
        part_cell = ring_part = np.arange(rings)
    else:
        parts, part_cell = shapely.get_parts(geoms, return_index=True)
        # Ragged coordinates with ring and part offsets: no ring geometries are built.
        _, coords, (ring_offsets, part_offsets) = shapely.to_ragged_array(parts)
        rings = len(ring_offsets) - 1
        ring_of_vertex = np.repeat(np.arange(rings), np.diff(ring_offsets))
        ring_part = np.repeat(np.arange(len(parts)), np.diff(part_offsets))
    inverse = ~transform
    u = inverse.a * coords[:, 0] + inverse.b * coords[:, 1] + inverse.c
    v = inverse.d * coords[:, 0] + inverse.e * coords[:, 1] + inverse.f
    is_exterior = np.ones(rings, dtype=bool)
    is_exterior[1:] = ring_part[1:] != ring_part[:-1]
    same = ring_of_vertex[1:] == ring_of_vertex[:-1]
    shoelace = np.bincount(
        ring_of_vertex[:-1][same], (u[:-1] * v[1:] - u[1:] * v[:-1])[same], minlength=rings
    )
    # The row sweep below yields -(signed area), so flip to +area for exteriors, -area for holes.
    sign = -np.sign(shoelace) * np.where(is_exterior, 1.0, -1.0)
    return u, v, ring_of_vertex, part_cell[ring_part], sign


def _cut_at_integers(a0, b0, a1, b1):
    """Every segment (a0, b0) -> (a1, b1) cut where ``a`` crosses an integer: its ends and the
    crossings, in travel order, without sorting (crossings run monotonically along a segment).
    Returns the points' a and b, each point's segment, and where each segment's points end."""
    lo = np.floor(np.minimum(a0, a1)) + 1
    hi = np.ceil(np.maximum(a0, a1)) - 1
    count = np.maximum(hi - lo + 1, 0).astype(np.int64)
    crossings = np.arange(count.sum())
    crossing_segment = np.repeat(np.arange(len(a0)), count)
    step = np.where(a1 > a0, 1.0, -1.0)
    before = np.cumsum(count) - count
    a_cross = (np.where(a1 > a0, lo, hi) - step * before)[crossing_segment] + step[crossing_segment] * crossings
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = (b1 - b0) / (a1 - a0)
    b_cross = b0[crossing_segment] + (a_cross - a0[crossing_segment]) * slope[crossing_segment]
    # Segment s owns slots start[s] .. end[s] - 1: its first end, its crossings, its last end.
    end = np.cumsum(count + 2)
    start = end - count - 2
    a, b = np.empty(len(crossings) + 2 * len(a0)), np.empty(len(crossings) + 2 * len(a0))
    a[start], b[start], a[end - 1], b[end - 1] = a0, b0, a1, b1
    at = crossings + 2 * crossing_segment + 1
    a[at], b[at] = a_cross, b_cross
    return a, b, np.repeat(np.arange(len(a0)), count + 2), end


def _pieces(points: int, end: np.ndarray) -> np.ndarray:
    """First point of every piece between consecutive points of the same segment."""
    keep = np.ones(points, dtype=bool)
    keep[end - 1] = False
    return np.flatnonzero(keep)


def coverage_weights(geoms, transform: Affine, shape: tuple[int, int], batch_elements: int = BATCH_ELEMENTS) -> CoverageWeights:
    """Exact coverage fraction of every pixel of a ``shape`` raster by every polygon
    (given in the raster's CRS); pixels outside the raster are not covered. Cells are swept in
    batches of about ``batch_elements`` bounding-box pixels (about 80 bytes each while swept)."""
    geoms = np.asarray(geoms, dtype=object)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    cell_area = shapely.area(geoms) / pixel_area
    bounds = shapely.bounds(geoms)
    inverse = ~transform
    corners_u = np.stack([inverse.a * bounds[:, i] + inverse.b * bounds[:, j] + inverse.c for i in (0, 2) for j in (1, 3)])
    corners_v = np.stack([inverse.d * bounds[:, i] + inverse.e * bounds[:, j] + inverse.f for i in (0, 2) for j in (1, 3)])
    col0 = np.floor(corners_u.min(axis=0)).astype(np.int64)
    row0 = np.floor(corners_v.min(axis=0)).astype(np.int64)
    width = np.floor(corners_u.max(axis=0)).astype(np.int64) - col0 + 2
    height = np.floor(corners_v.max(axis=0)).astype(np.int64) - row0 + 1
    size = width * height
    rows, cols, vals = [], [], []
    start = 0
    while start < len(geoms):
        stop = start + max(1, int(np.searchsorted(np.cumsum(size[start:]), batch_elements)))
        r, c, w = _batch_coverage(geoms[start:stop], transform, col0[start:stop], row0[start:stop], width[start:stop], height[start:stop], shape)
        rows.append(r + start)
        cols.append(c)
        vals.append(w)
        start = stop
    # Rows come out in cell order and each cell's pixels in raster order, once each, so the CSR
    # arrays are built directly (no COO sort or duplicate summing).
    row = np.concatenate(rows)
    indptr = np.zeros(len(geoms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row, minlength=len(geoms)), out=indptr[1:])
    matrix = sp.csr_matrix((np.concatenate(vals), np.concatenate(cols), indptr), shape=(len(geoms), shape[0] * shape[1]))
    matrix.has_sorted_indices = True
    return CoverageWeights(matrix=matrix, cell_area=cell_area, shape=tuple(shape))


def _batch_coverage(geoms, transform, col0, row0, width, height, shape):
    u, v, ring_of_vertex, ring_cell, sign = _pixel_rings(geoms, transform)
    same = np.flatnonzero(ring_of_vertex[1:] == ring_of_vertex[:-1])
    u0, v0, u1, v1 = u[same], v[same], u[same + 1], v[same + 1]
    edge_ring = ring_of_vertex[same]
    # Cut edges at pixel rows, then each row piece at pixel columns: every piece lies in one pixel.
    rv, ru, row_edge, row_end = _cut_at_integers(v0, u0, v1, u1)
    first = _pieces(len(rv), row_end)
    pu, pv, in_row, end = _cut_at_integers(ru[first], rv[first], ru[first + 1], rv[first + 1])
    piece = _pieces(len(pu), end)
    ring = edge_ring[row_edge[first[in_row[piece]]]]
    umid = 0.5 * (pu[piece] + pu[piece + 1])
    vmid = 0.5 * (pv[piece] + pv[piece + 1])
    dv = (pv[piece + 1] - pv[piece]) * sign[ring]
    cell = ring_cell[ring]
    c = np.floor(umid).astype(np.int64)
    r = np.floor(vmid).astype(np.int64)
    frac = umid - c
    offset = np.cumsum(width * height) - width * height
    local = offset[cell] + (r - row0[cell]) * width[cell] + (c - col0[cell])
    total = int((width * height).sum())
    acc = np.bincount(local, dv * (1.0 - frac), minlength=total) + np.bincount(local + 1, dv * frac, minlength=total + 1)[:total]
    # Row-wise running sum: every row of a closed ring sums to zero, so one cumsum with the
    # value before each row start subtracted is the per-row prefix sum.
    running = np.cumsum(acc)
    row_len = np.repeat(width, height)
    row_start = np.cumsum(row_len) - row_len
    before = np.where(row_start > 0, running[np.maximum(row_start - 1, 0)], 0.0)
    cover = running - np.repeat(before, row_len)
    nonzero = np.flatnonzero(cover > 1e-12)
    # Each element's bounding-box row gives its cell and the raster pixel of its row's first
    # element, so cells and pixels come from one gather (no search, no division).
    row_cell = np.repeat(np.arange(len(width)), height)
    pixel_row = row0[row_cell] + np.arange(len(row_cell)) - np.repeat(np.cumsum(height) - height, height)
    element_row = np.repeat(np.arange(len(row_cell)), row_len)[nonzero]
    flat = (pixel_row * shape[1] + col0[row_cell] - row_start)[element_row] + nonzero
    cell = row_cell[element_row]
    outside_rows = (pixel_row < 0) | (pixel_row >= shape[0])
    if outside_rows.any() or ((col0 < 0) | (col0 + width > shape[1])).any():
        col = nonzero - row_start[element_row] + col0[cell]
        inside = ~outside_rows[element_row] & (col >= 0) & (col < shape[1])
        nonzero, cell, flat = nonzero[inside], cell[inside], flat[inside]
    return cell, flat, np.minimum(cover[nonzero], 1.0)


@dataclass(frozen=True)
class ZonalResult:
    value: np.ndarray
    valid_fraction: np.ndarray


class ZonalAccumulator:
    """Area statistics gathered block by block: each block brings the coverage weights of its
    pixels (cells x block pixels, rows in ascending cell order) and its values; sums, valid
    weights, minima/maxima and (cell, value) weights add up across blocks, so any split of the
    raster into blocks gives the whole-window result (sums up to floating-point order)."""

    def __init__(self, cell_area: np.ndarray, methods):
        unknown = [m for m in methods if m not in AREA_METHODS]
        if unknown:
            raise ValueError(f"{unknown} are not area methods; use one of {', '.join(AREA_METHODS)}")
        self.methods = tuple(methods)
        self.cell_area = np.asarray(cell_area, dtype=np.float64)
        n = len(self.cell_area)
        self.valid_weight = np.zeros(n)
        self.total = np.zeros(n)
        self.low = np.full(n, np.nan)
        self.high = np.full(n, np.nan)
        self.pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, cells: np.ndarray, matrix: sp.csr_matrix, band: np.ndarray, valid: np.ndarray) -> None:
        """``matrix`` rows are the global cells ``cells`` (ascending), its columns the pixels of ``band``."""
        # Only covered pixels are gathered (through the sparse structure): the cost follows the
        # number of covered pixels, not the block's size, and the band is never copied whole.
        n = len(self.cell_area)
        row = np.repeat(np.asarray(cells, dtype=np.int64), np.diff(matrix.indptr))
        ok = np.asarray(valid, dtype=bool).ravel()[matrix.indices]
        v = np.asarray(band).ravel()[matrix.indices].astype(np.float64)
        w = np.where(ok, matrix.data, 0.0)
        self.valid_weight += np.bincount(row, w, minlength=n)
        if "mean" in self.methods or "sum" in self.methods:
            self.total += np.bincount(row, w * np.where(ok, v, 0.0), minlength=n)
        keep = ok & (matrix.data > 0)
        if not keep.any():
            return
        row, w, v = row[keep], w[keep], v[keep]
        if "min" in self.methods or "max" in self.methods:
            starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
            at = row[starts]
            if "min" in self.methods:
                self.low[at] = np.fmin(self.low[at], np.minimum.reduceat(v, starts))
            if "max" in self.methods:
                self.high[at] = np.fmax(self.high[at], np.maximum.reduceat(v, starts))
        if "majority" in self.methods:
            self.pairs.append(_summed_pairs(row, v, w))

    def result(self, method: str) -> ZonalResult:
        with np.errstate(invalid="ignore", divide="ignore"):
            valid_fraction = np.clip(np.where(self.cell_area > 0, self.valid_weight / self.cell_area, 0.0), 0, 1)
            if method == "sum":
                return ZonalResult(self.total.copy(), valid_fraction)  # exactextract: a cell with no valid pixels sums to 0
            if method == "mean":
                return ZonalResult(np.where(self.valid_weight > 0, self.total / self.valid_weight, np.nan), valid_fraction)
        if method == "min":
            return ZonalResult(self.low.copy(), valid_fraction)
        if method == "max":
            return ZonalResult(self.high.copy(), valid_fraction)
        if method == "majority":
            value = np.full(len(self.cell_area), np.nan)
            if self.pairs:
                row, v, w = (np.concatenate(part) for part in zip(*self.pairs, strict=True))
                row, v, w = _summed_pairs(row, v, w)
                order = np.lexsort((v, -w, row))
                best = order[np.r_[True, row[order][1:] != row[order][:-1]]]
                value[row[best]] = v[best]
            return ZonalResult(value, valid_fraction)
        raise ValueError(f"{method!r} is not an area method; use one of {', '.join(AREA_METHODS)}")


def _summed_pairs(row: np.ndarray, v: np.ndarray, w: np.ndarray):
    """Distinct (cell, value) pairs with their summed weight."""
    pairs, inverse = np.unique(np.stack([row.astype(np.float64), v]), axis=1, return_inverse=True)
    return pairs[0].astype(np.int64), pairs[1], np.bincount(inverse.ravel(), w, minlength=pairs.shape[1])


def zonal(weights: CoverageWeights, band: np.ndarray, valid: np.ndarray, method: str) -> ZonalResult:
    """Area-based statistic per cell over valid pixels, weighted by coverage as exactextract does:
    mean = sum(w v)/sum(w), sum = sum(w v), min/max over covered pixels, majority = value of largest
    summed coverage (ties: smallest value). The whole window as one block of ``ZonalAccumulator``."""
    if method not in AREA_METHODS:
        raise ValueError(f"{method!r} is not an area method; use one of {', '.join(AREA_METHODS)}")
    accumulator = ZonalAccumulator(weights.cell_area, [method])
    accumulator.add(np.arange(weights.matrix.shape[0]), weights.matrix, band, valid)
    return accumulator.result(method)


def keys_weights(t: np.ndarray, a: float = -0.5) -> np.ndarray:
    """Keys' cubic convolution kernel at distances ``t`` (GDAL's cubic: a = -0.5)."""
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


# A cubic sample whose valid neighbours carry less than this share of the kernel's weight is refused.
CUBIC_MIN_VALID_WEIGHT = 0.5


def point_sample(points_xy: np.ndarray, transform: Affine, band: np.ndarray, valid: np.ndarray, method: str,
                 *, row_offset: int = 0, full_shape: tuple[int, int] | None = None) -> ZonalResult:
    """Nearest, bilinear or cubic value at cell centres (x, y in the raster CRS).

    ``transform`` and ``full_shape`` describe the whole raster window; ``band`` may be a strip
    of it starting at row ``row_offset`` (it must hold the rows each point's kernel reaches).
    Kernels are clamped at the window's edges (edge pixels repeat). A point outside the window
    is NaN. Nearest: the pixel under the point. Bilinear: NaN when a neighbour of non-zero
    weight is nodata. Cubic: Keys' kernel (a = -0.5, as GDAL) over the 4 x 4 neighbours,
    renormalised over the valid ones (a constant field stays constant beside nodata); refused
    (NaN) when the valid neighbours carry under half the weight. ``valid_fraction`` is that
    weight share (1 or 0 for nearest and bilinear)."""
    height, width = full_shape or band.shape
    inverse = ~transform
    u = inverse.a * points_xy[:, 0] + inverse.b * points_xy[:, 1] + inverse.c
    v = inverse.d * points_xy[:, 0] + inverse.e * points_xy[:, 1] + inverse.f
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    u, v = np.where(inside, u, 0.0), np.where(inside, v, 0.0)
    rows, cols = band.shape

    def gather(r, c):
        r = np.clip(r, 0, height - 1) - row_offset
        c = np.clip(c, 0, width - 1)
        if len(r) and (r.min() < 0 or r.max() >= rows or c.max() >= cols):
            raise ValueError("point_sample: the band strip does not hold every row the kernels reach")
        return band[r, c].astype(np.float64), valid[r, c]

    if method == "nearest":
        value, ok = gather(np.floor(v).astype(np.int64), np.floor(u).astype(np.int64))
        ok = ok & inside
        return ZonalResult(np.where(ok, value, np.nan), ok.astype(np.float64))
    if method not in ("bilinear", "cubic"):
        raise ValueError(f"{method!r} is not a point method; use one of {', '.join(POINT_METHODS)}")
    fu, fv = u - 0.5, v - 0.5
    base_c, base_r = np.floor(fu).astype(np.int64), np.floor(fv).astype(np.int64)
    du, dv = fu - base_c, fv - base_r
    if method == "bilinear":
        offsets = (0, 1)
        wu = np.stack([1 - du, du])
        wv = np.stack([1 - dv, dv])
    else:
        offsets = (-1, 0, 1, 2)
        wu = keys_weights(np.stack([du - k for k in offsets]))
        wv = keys_weights(np.stack([dv - k for k in offsets]))
    total = np.zeros(len(u))
    weight_valid = np.zeros(len(u))
    bad = np.zeros(len(u), dtype=bool)
    for i, kr in enumerate(offsets):
        for j, kc in enumerate(offsets):
            w = wv[i] * wu[j]
            value, ok = gather(base_r + kr, base_c + kc)
            total += np.where(ok, w * value, 0.0)
            weight_valid += np.where(ok, w, 0.0)
            bad |= ~ok & (np.abs(w) > 1e-9)
    if method == "bilinear":
        ok = inside & ~bad
        return ZonalResult(np.where(ok, total, np.nan), ok.astype(np.float64))
    # weight_valid sums the signed weights of the valid neighbours (all of them: exactly 1).
    share = np.clip(weight_valid, 0, 1)
    ok = inside & (weight_valid >= CUBIC_MIN_VALID_WEIGHT)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(ok, total / np.where(ok, weight_valid, 1.0), np.nan)
    return ZonalResult(value, np.where(inside, share, 0.0))
