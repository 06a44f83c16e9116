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
    parts, part_cell = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    coords, ring_of_vertex = shapely.get_coordinates(rings, return_index=True)
    inverse = ~transform
    u = inverse.a * coords[:, 0] + inverse.b * coords[:, 1] + inverse.c
    v = inverse.d * coords[:, 0] + inverse.e * coords[:, 1] + inverse.f
    is_exterior = np.ones(len(rings), dtype=bool)
    is_exterior[1:] = ring_part[1:] != ring_part[:-1]
    same = ring_of_vertex[1:] == ring_of_vertex[:-1]
    shoelace = np.bincount(
        ring_of_vertex[:-1][same], (u[:-1] * v[1:] - u[1:] * v[:-1])[same], minlength=len(rings)
    )
    # The row sweep below yields -(signed area), so flip to +area for exteriors, -area for holes.
    sign = -np.sign(shoelace) * np.where(is_exterior, 1.0, -1.0)
    return u, v, ring_of_vertex, part_cell[ring_part], sign


def _split_edges(u0, v0, u1, v1):
    """Cut every edge at integer u and v; returns (edge index, t) of all pieces' ends, sorted."""
    n = len(u0)
    pieces = [np.arange(n), np.arange(n)], [np.zeros(n), np.ones(n)]
    edges, ts = pieces
    for a, b in ((u0, u1), (v0, v1)):
        lo = np.floor(np.minimum(a, b)) + 1
        hi = np.ceil(np.maximum(a, b)) - 1
        count = np.maximum(hi - lo + 1, 0).astype(np.int64)
        edge = np.repeat(np.arange(n), count)
        first = np.repeat(np.cumsum(count) - count, count)
        k = lo[edge] + (np.arange(count.sum()) - first)
        edges.append(edge)
        ts.append((k - a[edge]) / (b[edge] - a[edge]))
    edge = np.concatenate(edges)
    t = np.concatenate(ts)
    order = np.lexsort((t, edge))
    return edge[order], t[order]


def coverage_weights(geoms, transform: Affine, shape: tuple[int, int]) -> CoverageWeights:
    """Exact coverage fraction of every pixel of a ``shape`` raster by every polygon
    (given in the raster's CRS); pixels outside the raster are not covered."""
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
        stop = start + max(1, int(np.searchsorted(np.cumsum(size[start:]), BATCH_ELEMENTS)))
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
    edge, t = _split_edges(u0, v0, u1, v1)
    pu = u0[edge] + t * (u1[edge] - u0[edge])
    pv = v0[edge] + t * (v1[edge] - v0[edge])
    piece = np.flatnonzero(edge[1:] == edge[:-1])
    umid = 0.5 * (pu[piece] + pu[piece + 1])
    vmid = 0.5 * (pv[piece] + pv[piece + 1])
    dv = (pv[piece + 1] - pv[piece]) * sign[edge_ring[edge[piece]]]
    cell = ring_cell[edge_ring[edge[piece]]]
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
    elem_cell = np.searchsorted(offset, nonzero, side="right") - 1
    lr, lc = np.divmod(nonzero - offset[elem_cell], width[elem_cell])
    pixel_row, pixel_col = lr + row0[elem_cell], lc + col0[elem_cell]
    inside = (pixel_row >= 0) & (pixel_row < shape[0]) & (pixel_col >= 0) & (pixel_col < shape[1])
    flat = pixel_row[inside] * shape[1] + pixel_col[inside]
    return elem_cell[inside], flat, np.minimum(cover[nonzero[inside]], 1.0)


@dataclass(frozen=True)
class ZonalResult:
    value: np.ndarray
    valid_fraction: np.ndarray


def zonal(weights: CoverageWeights, band: np.ndarray, valid: np.ndarray, method: str) -> ZonalResult:
    """Area-based statistic per cell over valid pixels, weighted by coverage as exactextract does:
    mean = sum(w v)/sum(w), sum = sum(w v), min/max over covered pixels, majority = value of largest
    summed coverage (ties: smallest value)."""
    # Work on the covered pixels only (gathered through the sparse structure): the cost follows
    # the number of covered pixels, not the raster's size, and the band is never copied.
    matrix = weights.matrix
    cells = matrix.shape[0]
    row = np.repeat(np.arange(cells), np.diff(matrix.indptr))
    ok = np.asarray(valid, dtype=bool).ravel()[matrix.indices]
    v = np.asarray(band).ravel()[matrix.indices].astype(np.float64)
    w = np.where(ok, matrix.data, 0.0)
    valid_weight = np.bincount(row, w, minlength=cells)
    with np.errstate(invalid="ignore", divide="ignore"):
        valid_fraction = np.clip(np.where(weights.cell_area > 0, valid_weight / weights.cell_area, 0.0), 0, 1)
    if method in ("mean", "sum"):
        total = np.bincount(row, w * np.where(ok, v, 0.0), minlength=cells)
        if method == "sum":
            return ZonalResult(total, valid_fraction)  # exactextract: a cell with no valid pixels sums to 0
        with np.errstate(invalid="ignore", divide="ignore"):
            return ZonalResult(np.where(valid_weight > 0, total / valid_weight, np.nan), valid_fraction)
    keep = ok & (matrix.data > 0)
    row, w, v = row[keep], w[keep], v[keep]
    value = np.full(matrix.shape[0], np.nan)
    if method in ("min", "max"):
        order = np.lexsort((v, row))
        row, v = row[order], v[order]
        first = np.flatnonzero(np.r_[True, row[1:] != row[:-1]]) if len(row) else np.array([], dtype=int)
        last = np.r_[first[1:] - 1, len(row) - 1] if len(row) else first
        value[row[first]] = v[first] if method == "min" else v[last]
    elif method == "majority":
        pairs, inverse = np.unique(np.stack([row, v]), axis=1, return_inverse=True)
        summed = np.bincount(inverse.ravel(), w, minlength=pairs.shape[1])
        order = np.lexsort((pairs[1], -summed, pairs[0]))
        best = order[np.r_[True, pairs[0][order][1:] != pairs[0][order][:-1]]] if len(order) else order
        value[pairs[0][best].astype(np.int64)] = pairs[1][best]
    else:
        raise ValueError(f"{method!r} is not an area method; use one of {', '.join(AREA_METHODS)}")
    return ZonalResult(value, valid_fraction)


def point_sample(points_xy: np.ndarray, transform: Affine, band: np.ndarray, valid: np.ndarray, method: str) -> ZonalResult:
    """Nearest, bilinear or cubic value at cell centres (x, y in the raster CRS); a sample
    that touches an invalid pixel or falls outside the raster is NaN."""
    from scipy.ndimage import map_coordinates

    inverse = ~transform
    u = inverse.a * points_xy[:, 0] + inverse.b * points_xy[:, 1] + inverse.c
    v = inverse.d * points_xy[:, 0] + inverse.e * points_xy[:, 1] + inverse.f
    height, width = band.shape
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    if method == "nearest":
        r = np.clip(np.floor(v).astype(int), 0, height - 1)
        c = np.clip(np.floor(u).astype(int), 0, width - 1)
        ok = inside & valid[r, c]
        value = np.where(ok, band[r, c].astype(np.float64), np.nan)
        return ZonalResult(value, ok.astype(np.float64))
    order = {"bilinear": 1, "cubic": 3}.get(method)
    if order is None:
        raise ValueError(f"{method!r} is not a point method; use one of {', '.join(POINT_METHODS)}")
    coords = np.stack([v - 0.5, u - 0.5])
    filled = np.where(valid, band, 0).astype(np.float64)
    value = map_coordinates(filled, coords, order=order, mode="nearest", prefilter=order > 1)
    touched = map_coordinates((~valid).astype(np.float64), coords, order=1, mode="nearest")
    ok = inside & (touched < 1e-9)
    return ZonalResult(np.where(ok, value, np.nan), ok.astype(np.float64))
