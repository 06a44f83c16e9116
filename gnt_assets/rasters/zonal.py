"""Exact coverage fractions of polygons over a pixel grid, and zonal statistics from them.

Coverage is computed with Green's theorem, as exact-area font rasterizers do: every
polygon edge is cut at pixel boundaries, each piece adds its signed height to the
pixel it lies in (split by where its midpoint sits) and a running sum along the row
turns those contributions into the covered area of every pixel. Between two pixels
that edges touch the running sum is constant, so each cell's coverage is kept run-length
per pixel row: the touched (partly covered) pixels one by one, and the stretches between
them as runs [start, stop) of one coverage (1 inside the cell). Interior pixels cost no
storage and statistics sum them straight from the band. The sweep and the sums are
compiled loops (numba, cached on disk: compiled once per install and band type).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import shapely
from affine import Affine

AREA_METHODS = ("mean", "sum", "min", "max", "majority")
POINT_METHODS = ("nearest", "bilinear", "cubic")
METHODS = AREA_METHODS + POINT_METHODS
# Coverage at or below this is no coverage (the running sums' rounding noise).
MIN_COVERAGE = 1e-12


@dataclass(frozen=True)
class CoverageWeights:
    """Coverage of a ``shape`` raster's pixels (row-major flat index) by cells 0..n-1: partly covered
    pixels (``pixel``, ``pixel_weight``; in cell order, cell i's from ``pixel_offsets[i]`` to
    ``pixel_offsets[i + 1]``: no cell number per pixel) and runs of pixels of one coverage (``run_cell``, pixels ``run_start`` to ``run_stop`` - 1 of one row, ``run_weight``; in
    raster order); ``cell_area`` is each cell's area in pixels. Pixel indices are int32 where the
    raster (a block of rows, in ``resample``) has under 2**31 pixels, else int64."""

    pixel_offsets: np.ndarray
    pixel: np.ndarray
    pixel_weight: np.ndarray
    run_cell: np.ndarray
    run_start: np.ndarray
    run_stop: np.ndarray
    run_weight: np.ndarray
    cell_area: np.ndarray
    shape: tuple[int, int]

    @property
    def cells(self) -> int:
        return len(self.cell_area)

    @property
    def pixel_cell(self) -> np.ndarray:
        """Each partly covered pixel's cell."""
        return np.repeat(np.arange(self.cells, dtype=np.int32), np.diff(self.pixel_offsets))

    @property
    def covered_pixels(self) -> int:
        return len(self.pixel) + int((self.run_stop - self.run_start).sum())

    def arrays(self) -> dict[str, np.ndarray]:
        """The coverage as named arrays (the weights cache's file), ``from_arrays`` reads them back."""
        return {name: getattr(self, name) for name in _ARRAYS} | {"shape": np.array(self.shape)}

    @classmethod
    def from_arrays(cls, data) -> CoverageWeights:
        return cls(**{name: data[name] for name in _ARRAYS}, shape=tuple(int(s) for s in data["shape"]))


_ARRAYS = ("pixel_offsets", "pixel", "pixel_weight", "run_cell", "run_start", "run_stop", "run_weight", "cell_area")


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


def coverage_weights(geoms, transform: Affine, shape: tuple[int, int]) -> CoverageWeights:
    """Exact coverage fraction of every pixel of a ``shape`` raster by every polygon (given in
    the raster's CRS); pixels outside the raster are not covered. Memory follows the cells'
    edges and rows, not their areas: one cell at a time is swept."""
    geoms = np.asarray(geoms, dtype=object)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    cell_area = shapely.area(geoms) / pixel_area
    u, v, ring_of_vertex, ring_cell, sign = _pixel_rings(geoms, transform)
    ring_offsets = np.zeros(len(sign) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ring_of_vertex, minlength=len(sign)), out=ring_offsets[1:])
    cell_rings = np.zeros(len(geoms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(ring_cell, minlength=len(geoms)), out=cell_rings[1:])
    index = np.int32 if int(shape[0]) * int(shape[1]) < 2**31 else np.int64  # half the bytes of int64 where it fits
    pixel_offsets, pixel, pixel_weight, *runs = _sweep(u, v, ring_offsets, cell_rings, sign.astype(np.float64), int(shape[0]), int(shape[1]), index)
    # Runs in raster order: the sums then read the band front to back (a cell's runs lie a row apart).
    order = np.argsort(runs[1], kind="stable")
    return CoverageWeights(pixel_offsets, pixel, pixel_weight, *(run[order] for run in runs), cell_area=cell_area,
                           shape=(int(shape[0]), int(shape[1])))


@numba.njit(cache=True)
def _row_piece_entries(ua, va, ub, vb, sign, cols, areas, heights, n):
    """One edge piece within a pixel row cut where ``u`` crosses an integer, from left to right
    (a piece run backwards adds the opposite height, so the sign flips): each part adds its
    signed height to the row from its pixel on, split by where its midpoint sits: the share
    right of the midpoint in its pixel (``areas``), all of it (``heights``) past it. Entries from
    ``n`` on, in ascending columns; returns the new count."""
    if ub < ua:
        ua, va, ub, vb, sign = ub, vb, ua, va, -sign
    lo = np.floor(ua) + 1.0
    count = max(int(np.ceil(ub) - 1.0 - lo) + 1, 0)
    slope = (vb - va) / (ub - ua) if count > 0 else 0.0
    pu, pv = ua, va
    for j in range(count + 1):
        if j < count:
            qu = lo + j
            qv = va + (qu - ua) * slope
        else:
            qu, qv = ub, vb
        dv = (qv - pv) * sign
        if dv != 0.0:
            umid = 0.5 * (pu + qu)
            c = np.floor(umid)
            cols[n], areas[n], heights[n] = int(c), dv * (1.0 - (umid - c)), dv
            n += 1
        pu, pv = qu, qv
    return n


@numba.njit(cache=True)
def _edge_entries(u0, v0, u1, v1, sign, height, cols, areas, heights, n, piece_row, piece_start, pieces):
    """One edge cut where ``v`` crosses an integer (pixel rows); each piece in a row of the raster
    is cut at columns and recorded (its row and first entry); horizontal edges add nothing.
    Returns the new entry and piece counts."""
    if v0 == v1:
        return n, pieces
    lo = np.floor(min(v0, v1)) + 1.0
    hi = np.ceil(max(v0, v1)) - 1.0
    count = max(int(hi - lo) + 1, 0)
    step = 1.0 if v1 > v0 else -1.0
    first = lo if v1 > v0 else hi
    slope = (u1 - u0) / (v1 - v0)
    pu, pv = u0, v0
    for j in range(count + 1):
        if j < count:
            qv = first + step * j
            qu = u0 + (qv - v0) * slope
        else:
            qu, qv = u1, v1
        row = int(np.floor(0.5 * (pv + qv)))
        if 0 <= row < height:
            start = n
            n = _row_piece_entries(pu, pv, qu, qv, sign, cols, areas, heights, n)
            if n > start:
                piece_row[pieces], piece_start[pieces] = row, start
                pieces += 1
        pu, pv = qu, qv
    return n, pieces


@numba.njit(cache=True)
def _sort_by_column(cols, areas, heights, m):
    """Sort the first ``m`` (column, area, height) entries by column: insertion sort, as a row's pieces come
    in ascending columns and ordered by their first, so they are sorted but where pieces overlap."""
    if m > 64:
        order = np.argsort(cols[:m], kind="mergesort")
        cols[:m], areas[:m], heights[:m] = cols[:m][order], areas[:m][order], heights[:m][order]
        return
    for i in range(1, m):
        c, a, h = cols[i], areas[i], heights[i]
        j = i - 1
        while j >= 0 and cols[j] > c:
            cols[j + 1], areas[j + 1], heights[j + 1] = cols[j], areas[j], heights[j]
            j -= 1
        cols[j + 1], areas[j + 1], heights[j + 1] = c, a, h


@numba.njit(cache=True)
def _sweep(u, v, ring_offsets, cell_rings, sign, height, width, index):
    """Every cell's edge pieces grouped by row (counting sort), each row's entries put in column
    order and summed left to right: touched pixels get the running sum, the stretches between
    them a run of it (clipped to the raster); pixel indices of type ``index``."""
    # Entries per cell are bounded by its edges' row and column crossings: each makes at most one
    # listed pixel and one run, so the outputs are allocated once at the bound (pages never written
    # are never mapped) and handed out as views.
    cells = len(cell_rings) - 1
    bound = np.zeros(cells, np.int64)
    for cell in range(cells):
        for ring in range(cell_rings[cell], cell_rings[cell + 1]):
            for k in range(ring_offsets[ring], ring_offsets[ring + 1] - 1):
                # one entry per piece; pieces: the row crossings + 1, plus the column crossings + 1 per row
                bound[cell] += 2 * int(abs(np.floor(v[k + 1]) - np.floor(v[k])) + abs(np.floor(u[k + 1]) - np.floor(u[k]))) + 4
    total, most = bound.sum(), bound.max() if cells else 0
    pixel_offsets, pixel, pixel_weight = np.zeros(cells + 1, np.int64), np.empty(total, index), np.empty(total, np.float64)
    run_cell, run_start, run_stop = np.empty(total, np.int32), np.empty(total, index), np.empty(total, index)
    run_weight = np.empty(total, np.float64)
    pixels = runs = 0
    cols, areas, heights = np.empty(most, np.int64), np.empty(most, np.float64), np.empty(most, np.float64)
    row_cols, row_areas, row_heights = np.empty(most, np.int64), np.empty(most, np.float64), np.empty(most, np.float64)
    piece_row, piece_start, order = np.empty(most + 1, np.int64), np.empty(most + 1, np.int64), np.empty(most + 1, np.int64)
    for cell in range(cells):
        pixel_offsets[cell] = pixels
        if bound[cell] == 0:
            continue
        vmin, vmax = np.inf, -np.inf
        for k in range(ring_offsets[cell_rings[cell]], ring_offsets[cell_rings[cell + 1]]):
            vmin, vmax = min(vmin, v[k]), max(vmax, v[k])
        n = pieces = 0
        for ring in range(cell_rings[cell], cell_rings[cell + 1]):
            for k in range(ring_offsets[ring], ring_offsets[ring + 1] - 1):
                n, pieces = _edge_entries(u[k], v[k], u[k + 1], v[k + 1], sign[ring], height, cols, areas, heights, n, piece_row, piece_start, pieces)
        if pieces == 0:
            continue
        # Group the pieces by row (counting sort); piece p's entries run to the next piece's start.
        piece_start[pieces] = n
        r_lo = max(int(np.floor(vmin)), 0)
        r_count = min(int(np.floor(vmax)), height - 1) - r_lo + 1
        row_end = np.zeros(r_count + 1, np.int64)
        for p in range(pieces):
            row_end[piece_row[p] - r_lo + 1] += 1
        for r in range(r_count):
            row_end[r + 1] += row_end[r]
        fill = row_end[:-1].copy()
        for p in range(pieces):
            r = piece_row[p] - r_lo
            order[fill[r]] = p
            fill[r] += 1
        for r in range(r_count):
            # the row's pieces by first column (insertion sort: a row has a few), their entries in that order
            first, last = row_end[r], row_end[r + 1]
            if first == last:
                continue
            for i in range(first + 1, last):
                p = order[i]
                j = i - 1
                while j >= first and cols[piece_start[order[j]]] > cols[piece_start[p]]:
                    order[j + 1] = order[j]
                    j -= 1
                order[j + 1] = p
            m = 0
            for i in range(first, last):
                p = order[i]
                for e in range(piece_start[p], piece_start[p + 1]):
                    row_cols[m], row_areas[m], row_heights[m] = cols[e], areas[e], heights[e]
                    m += 1
            _sort_by_column(row_cols, row_areas, row_heights, m)
            base = (r_lo + r) * width
            running, j, after = 0.0, 0, row_cols[0]
            while j < m:
                c = row_cols[j]
                if running > MIN_COVERAGE and after < c:
                    start, stop = max(after, 0), min(c, width)
                    if start < stop:
                        run_cell[runs], run_start[runs], run_stop[runs] = cell, base + start, base + stop
                        run_weight[runs] = min(running, 1.0)
                        runs += 1
                area, rise = running, 0.0
                while j < m and row_cols[j] == c:
                    area += row_areas[j]
                    rise += row_heights[j]
                    j += 1
                if area > MIN_COVERAGE and 0 <= c < width:
                    pixel[pixels], pixel_weight[pixels] = base + c, min(area, 1.0)
                    pixels += 1
                running += rise
                after = c + 1
    pixel_offsets[cells] = pixels
    return (pixel_offsets, pixel[:pixels], pixel_weight[:pixels],
            run_cell[:runs], run_start[:runs], run_stop[:runs], run_weight[:runs])


def valid_mask(values: np.ndarray, nodata: float | None, out: np.ndarray | None = None) -> np.ndarray:
    """Pixels that are finite and not ``nodata`` (compared in the band's type, as numpy compares them),
    in one compiled pass (numpy's isfinite, != and & took three); ``out``: a C-contiguous bool array to fill."""
    out = np.empty(values.shape, bool) if out is None else out
    has_nodata = nodata is not None and not np.isnan(nodata)
    _valid_pixels(values.reshape(-1), values.dtype.type(nodata if has_nodata else 0), has_nodata, out.reshape(-1))
    return out


@numba.njit(cache=True)
def _valid_pixels(values, nodata, has_nodata, out):
    for i in range(values.size):
        x = values[i]
        out[i] = np.isfinite(x) and not (has_nodata and x == nodata)


@dataclass(frozen=True)
class ZonalResult:
    value: np.ndarray
    valid_fraction: np.ndarray


class ZonalAccumulator:
    """Area statistics gathered block by block: each block brings the coverage of its pixels by
    some of the cells and its values; sums, valid weights, minima/maxima and (cell, value)
    weights add up across blocks, so any split of the raster into blocks gives the whole-window
    result (sums up to floating-point order)."""

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

    def add(self, cells: np.ndarray, weights: CoverageWeights, band: np.ndarray, valid: np.ndarray) -> None:
        """``weights``' cells 0..n-1 are the global cells ``cells``, its pixels those of ``band``."""
        # Only covered pixels are read, straight from the band (runs need no gather or copy).
        cells = np.asarray(cells, dtype=np.int64)
        band = np.ascontiguousarray(band).reshape(-1)
        valid = np.ascontiguousarray(valid, dtype=bool).reshape(-1)
        w = weights
        _add_sums(cells, w.pixel_offsets, w.pixel, w.pixel_weight, w.run_cell, w.run_start, w.run_stop, w.run_weight,
                  band, valid, self.valid_weight, self.total)
        if "min" in self.methods or "max" in self.methods:
            _add_extremes(cells, w.pixel_offsets, w.pixel, w.run_cell, w.run_start, w.run_stop, band, valid, self.low, self.high)
        if "majority" in self.methods:
            row, v, weight = _covered_values(cells, w.pixel_offsets, w.pixel, w.pixel_weight, w.run_cell, w.run_start, w.run_stop,
                                             w.run_weight, band, valid)
            if len(row):
                self.pairs.append(_summed_pairs(row, v, weight))

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


@numba.njit(cache=True)
def _add_sums(cells, pixel_offsets, pixel, pixel_weight, run_cell, run_start, run_stop, run_weight, band, valid, valid_weight, total):
    """Valid coverage and coverage-weighted value sums per cell."""
    for k in range(len(pixel_offsets) - 1):
        cell = cells[k]
        for i in range(pixel_offsets[k], pixel_offsets[k + 1]):
            p = pixel[i]
            if valid[p]:
                valid_weight[cell] += pixel_weight[i]
                total[cell] += pixel_weight[i] * np.float64(band[p])
    for i in range(len(run_start)):
        count, value = 0, 0.0
        for p in range(run_start[i], run_stop[i]):
            ok = valid[p]
            count += ok
            value += np.float64(band[p]) if ok else 0.0
        cell = cells[run_cell[i]]
        valid_weight[cell] += run_weight[i] * count
        total[cell] += run_weight[i] * value


@numba.njit(cache=True, inline="always")
def _widen(low, high, cell, x):
    if not x >= low[cell]:
        low[cell] = x
    if not x <= high[cell]:
        high[cell] = x


@numba.njit(cache=True)
def _add_extremes(cells, pixel_offsets, pixel, run_cell, run_start, run_stop, band, valid, low, high):
    """Smallest and largest valid covered value per cell (NaN: none yet)."""
    for k in range(len(pixel_offsets) - 1):
        cell = cells[k]
        for i in range(pixel_offsets[k], pixel_offsets[k + 1]):
            if valid[pixel[i]]:
                _widen(low, high, cell, np.float64(band[pixel[i]]))
    for i in range(len(run_start)):
        cell = cells[run_cell[i]]
        for p in range(run_start[i], run_stop[i]):
            if valid[p]:
                _widen(low, high, cell, np.float64(band[p]))


@numba.njit(cache=True)
def _covered_values(cells, pixel_offsets, pixel, pixel_weight, run_cell, run_start, run_stop, run_weight, band, valid):
    """(cell, value, coverage) of every valid covered pixel (majority weighs values by coverage)."""
    n = 0
    for i in range(len(pixel)):
        n += valid[pixel[i]]
    for i in range(len(run_start)):
        for p in range(run_start[i], run_stop[i]):
            n += valid[p]
    row, value, weight = np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64)
    n = 0
    for k in range(len(pixel_offsets) - 1):
        for i in range(pixel_offsets[k], pixel_offsets[k + 1]):
            p = pixel[i]
            if valid[p]:
                row[n], value[n], weight[n] = cells[k], np.float64(band[p]), pixel_weight[i]
                n += 1
    for i in range(len(run_start)):
        for p in range(run_start[i], run_stop[i]):
            if valid[p]:
                row[n], value[n], weight[n] = cells[run_cell[i]], np.float64(band[p]), run_weight[i]
                n += 1
    return row, value, weight


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
    accumulator.add(np.arange(weights.cells), weights, band, valid)
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
