"""Grids that hold a continent: defined by parameters, enumerated per chunk, never held whole.

A tiling is a handful of numbers (cell size, pixel size, chunk size, CRS rule). Its *chunks* are coarse
units (square: super-tiles of about 200 km in the chunk's own UTM zone or a configured equal-area CRS;
Major TOM: lon/lat boxes of a few degrees) and become the ``chunk`` partitions; the *cells* of one chunk
are enumerated on demand from the chunk and the AOI, with exact GeoBoxes. Nothing builds a table of every
cell: Europe at 960 m is about 20 million cells, its chunk list a few hundred rows.

The AOI is densified (``shapely.segmentize``) before it is projected, so a large AOI keeps its shape in the
projected CRS instead of becoming the polygon of its four projected corners.

Square cells of one zone are whole zarr chunks of that zone's cube, anchored on multiples of the chunk
size, so two cells never share a zarr chunk by construction (the layout is arithmetic, not a search).
Major TOM cells get a GeoBox each in the UTM zone of the cell centre, rounded outwards to the pixel grid
(nothing of the cell is lost to snapping), so they cannot be windows of one regular cube: each cell is
stored as its own image (a zarr store per cell, as Major TOM itself stores one image per cell); with
``overlap=True`` the offset cells are a second layer with a store of its own, and within a layer no two
cells share area.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from functools import lru_cache

import numpy as np
import shapely
from affine import Affine
from odc.geo import CRS as GeoCRS
from odc.geo import wh_
from odc.geo.geobox import GeoBox
from pyproj import CRS, Transformer
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from gnt_assets.core.keys import sanitize_key
from gnt_assets.sentinel.cube import CubeLayout
from gnt_assets.sentinel.grid import GridError

UTM = "utm"  # the square grid's CRS rule: each chunk in the UTM zone it lies in
DENSIFY_DEG = 0.05  # longest AOI edge (degrees) before projecting: about 5 km, far below a cell's error budget
METRES_PER_DEGREE = 111_320.0
EDGE_PAD_M = 1.0
MIN_PART_DEG2 = 1e-10  # about 1 m2: a zone the AOI only grazes gets no chunk


def densify(geometry: BaseGeometry, max_segment_deg: float = DENSIFY_DEG) -> BaseGeometry:
    """The geometry with extra vertices so no edge is longer than ``max_segment_deg``."""
    return shapely.segmentize(geometry, max_segment_deg)


@lru_cache(maxsize=256)
def _geo_crs(name: str) -> GeoCRS:
    return GeoCRS(name)


@lru_cache(maxsize=256)
def _transformer(source: str, crs: str) -> Transformer:
    return Transformer.from_crs(source, crs, always_xy=True)


def project(geometry: BaseGeometry, crs: str, *, source: str = "EPSG:4326", max_segment: float = DENSIFY_DEG) -> BaseGeometry:
    """The geometry densified in its own units, then transformed vertex by vertex to ``crs``."""
    transformer = _transformer(source, crs)

    def forward(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    projected = shapely.transform(shapely.segmentize(geometry, max_segment), forward)
    if not np.isfinite(shapely.get_coordinates(projected)).all():
        raise GridError(f"the AOI {geometry.bounds} does not project into {crs} (outside its area of use)")
    return shapely.make_valid(projected)


def utm_epsg(lon: float, lat: float) -> int:
    """EPSG code of the UTM zone (WGS 84, north 326xx or south 327xx) holding a point."""
    zone = min(60, max(1, math.floor((lon + 180) / 6) + 1))
    return (32600 if lat >= 0 else 32700) + zone


def utm_parts(aoi: BaseGeometry) -> list[tuple[int, BaseGeometry]]:
    """The AOI cut at UTM zone edges and the equator: (EPSG code, part in EPSG:4326) per zone it touches."""
    west, south, east, north = aoi.bounds
    parts = []
    for hemisphere, lat0, lat1 in ((32600, 0.0, 90.0), (32700, -90.0, 0.0)):
        if north < lat0 or south >= lat1 or (hemisphere == 32600 and north == 0 and south < 0):
            continue
        for zone in range(math.floor((west + 180) / 6) + 1, min(60, math.floor((east + 180) / 6) + 1) + 1):
            lon0 = -180 + 6 * (zone - 1)
            part = aoi.intersection(box(lon0, lat0, lon0 + 6, lat1))
            if not part.is_empty and part.area > MIN_PART_DEG2:
                parts.append((hemisphere + zone, part))
    return parts


def _grow(mask: np.ndarray) -> np.ndarray:
    """The mask and its 8 neighbours (an edge of at most one cell from a vertex stays in the vertex's neighbours)."""
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    grown = out.copy()
    grown[:, 1:] |= out[:, :-1]
    grown[:, :-1] |= out[:, 1:]
    return grown


def _polygonal(geometry: BaseGeometry) -> BaseGeometry:
    """The geometry without its lines and points (an intersection may add them where two edges meet)."""
    if geometry.geom_type != "GeometryCollection":
        return geometry
    return shapely.union_all([g for g in shapely.get_parts(geometry) if g.area > 0])


@dataclass(frozen=True)
class Chunk:
    """A coarse unit of the grid (one ``chunk`` partition): its key, CRS and bounds in that CRS."""

    key: str
    grid: str
    crs: str
    ix: int
    iy: int
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True)
class Cell:
    """One mosaic cell: its key and exact pixel grid (layer > 0 only for Major TOM's overlapping cells)."""

    key: str
    crs: str
    left: float
    top: float
    width: int
    height: int
    res: float
    layer: int = 0

    @property
    def geobox(self) -> GeoBox:
        # a Shape2d and a parsed CRS: a tuple and a name are normalised again per GeoBox (80 % of planning a Major TOM chunk)
        return GeoBox(wh_(self.width, self.height), Affine(self.res, 0, self.left, 0, -self.res, self.top), _geo_crs(self.crs))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.left, self.top - self.height * self.res, self.left + self.width * self.res, self.top)


@dataclass(frozen=True)
class SquareTiling:
    """Squares of ``cell_m`` in each chunk's UTM zone (``crs='utm'``) or in one projected CRS (e.g. EPSG:3035),
    edges on multiples of the cell size; chunks are ``chunk_cells`` x ``chunk_cells`` cells.

    ``shard_cells > 1`` groups ``shard_cells`` x ``shard_cells`` cells into one zarr v3 shard: the shard is then the
    unit a task computes and writes (its cells' zarr chunks are the shard's inner chunks), so a month of a
    continent is one object per shard instead of one per cell. Shards tile chunks exactly, so two partitions
    never share one."""

    name: str = "square"
    cell_m: float = 960.0
    res_m: float = 10.0
    chunk_m: float = 200_000.0
    crs: str = UTM
    chunks_per_side: int = 1  # zarr chunks per cell side
    shard_cells: int = 1  # cells per shard side (1: no sharding, a task per cell)

    def __post_init__(self):
        if self.cell_m <= 0 or self.res_m <= 0 or self.chunk_m < self.cell_m:
            raise GridError(f"grid {self.name!r}: need cell_m > 0, res_m > 0, chunk_m >= cell_m (got {self})")
        if self.shard_cells < 1 or self.chunk_cells % self.shard_cells:
            raise GridError(f"grid {self.name!r}: shard_cells {self.shard_cells} does not divide the {self.chunk_cells} "
                            "cells of a chunk side; shards must tile chunks so no two partitions share one")
        px = self.cell_m / self.res_m
        if abs(px - round(px)) > 1e-9 or round(px) % self.chunks_per_side:
            raise GridError(f"grid {self.name!r}: a {self.cell_m} m cell is not a whole number of {self.chunks_per_side} "
                            f"x {self.res_m} m zarr chunks per side; pick cell_m a multiple of res_m * chunks_per_side")
        if self.crs != UTM and not CRS.from_user_input(self.crs).is_projected:
            raise GridError(f"grid {self.name!r}: crs {self.crs!r} is not projected; use 'utm' or e.g. EPSG:3035")

    @property
    def chunk_cells(self) -> int:
        return max(1, round(self.chunk_m / self.cell_m))

    @property
    def chunk_px(self) -> int:
        return round(self.cell_m / self.res_m) // self.chunks_per_side

    @property
    def shard_px(self) -> int:
        """Pixels per side of a write unit: a shard of cells, or one cell's zarr chunk when unsharded."""
        return round(self.cell_m / self.res_m) * self.shard_cells if self.shard_cells > 1 else self.chunk_px

    def description(self) -> dict:
        return {"kind": "square", **asdict(self), "chunk_cells": self.chunk_cells, "chunk_px": self.chunk_px}

    @classmethod
    def from_description(cls, description: dict) -> SquareTiling:
        names = ("name", "cell_m", "res_m", "chunk_m", "crs", "chunks_per_side", "shard_cells")
        return cls(**{k: description[k] for k in names if k in description})  # tables from before shards: unsharded

    # -- zones: one cube per CRS --------------------------------------------------------------
    def zones(self, aoi: BaseGeometry) -> list[tuple[str, BaseGeometry]]:
        """(CRS, AOI part projected into it) per cube: one per UTM zone touched, or the one configured CRS."""
        if self.crs == UTM:
            return [(f"EPSG:{epsg}", project(part, f"EPSG:{epsg}")) for epsg, part in utm_parts(aoi)]
        return [(self.crs, project(aoi, self.crs))]

    def zone_of(self, crs: str, aoi: BaseGeometry) -> BaseGeometry:
        """The AOI part of one zone, projected (what a chunk needs to enumerate its cells)."""
        if self.crs != UTM:
            return project(aoi, self.crs)
        epsg = int(crs.split(":")[1])
        parts = dict(utm_parts(aoi))
        if epsg not in parts:
            raise GridError(f"grid {self.name!r}: the AOI does not reach {crs}")
        return project(parts[epsg], crs)

    def _zone_code(self, crs: str) -> str:
        return crs.split(":")[-1]

    def chunk_key(self, crs: str, ix: int, iy: int) -> str:
        return sanitize_key(f"{self.name}-{self._zone_code(crs)}_{ix}_{iy}")

    # -- chunks ---------------------------------------------------------------------------------
    def chunks(self, aoi: BaseGeometry) -> Iterator[Chunk]:
        """Every chunk whose square meets the AOI, zone by zone (a few hundred for Europe, streamed)."""
        size = self.chunk_cells * self.cell_m
        for crs, part in self.zones(aoi):
            yield from self._zone_chunks(crs, part, size)

    def _zone_chunks(self, crs: str, part: BaseGeometry, size: float) -> Iterator[Chunk]:
        min_x, min_y, max_x, max_y = part.bounds
        ixs = np.arange(math.floor(min_x / size), math.ceil(max_x / size))
        iys = np.arange(math.floor(min_y / size), math.ceil(max_y / size))
        gx, gy = (a.ravel() for a in np.meshgrid(ixs, iys))
        squares = shapely.box(gx * size, gy * size, (gx + 1) * size, (gy + 1) * size)
        shapely.prepare(part)
        hits = shapely.intersects(part, squares) & ~shapely.touches(part, squares)
        for ix, iy in zip(gx[hits].tolist(), gy[hits].tolist(), strict=True):
            yield Chunk(self.chunk_key(crs, ix, iy), self.name, crs, ix, iy, (ix * size, iy * size, (ix + 1) * size, (iy + 1) * size))

    def chunk(self, key: str) -> Chunk:
        """The chunk a key names (no AOI needed): zone and super-tile indices are in the key."""
        prefix = f"{self.name}-"
        try:
            zone, ix, iy = key.removeprefix(prefix).split("_") if key.startswith(prefix) else ("", "", "")
            crs = self.crs if self.crs != UTM else f"EPSG:{int(zone)}"
            if self._zone_code(crs) != zone:
                raise ValueError(zone)
            ix, iy = int(ix), int(iy)
        except ValueError as error:
            raise GridError(f"chunk {key!r} is not a chunk key of grid {self.name!r} ({prefix}<zone>_<ix>_<iy>)") from error
        size = self.chunk_cells * self.cell_m
        return Chunk(key, self.name, crs, ix, iy, (ix * size, iy * size, (ix + 1) * size, (iy + 1) * size))

    # -- cells of one chunk ---------------------------------------------------------------------
    def cell_indices(self, chunk: Chunk, zone_part: BaseGeometry) -> list[tuple[int, int]]:
        """Global (column, row) indices of the chunk's cells that share area with the AOI, one chunk at a time:
        a cell no AOI edge enters is inside or outside whole, so its centre decides (rasterized); the cells
        around the AOI's edge vertices (densified to half a cell) hold every edge and get the exact shapely test.
        GDAL's all_touched is not enough there: it missed slivers a few metres wide along the chunk's edge."""
        from rasterio.features import rasterize

        n, d = self.chunk_cells, self.cell_m
        west, _, _, north = chunk.bounds
        local = _polygonal(zone_part.intersection(box(*chunk.bounds)))
        if local.is_empty or local.area == 0:
            return []
        i0, j0 = chunk.ix * n, chunk.iy * n
        if local.equals(box(*chunk.bounds)):
            inside = np.ones((n, n), bool)
        else:
            transform = Affine(d, 0, west, 0, -d, north)  # row 0 = northernmost cells
            inside = rasterize([local], (n, n), transform=transform, dtype="uint8").astype(bool)
            xy = shapely.get_coordinates(shapely.segmentize(local, d / 2))
            vertex = np.zeros((n, n), bool)
            vertex[np.clip(np.floor((north - xy[:, 1]) / d).astype(np.int64), 0, n - 1),
                   np.clip(np.floor((xy[:, 0] - west) / d).astype(np.int64), 0, n - 1)] = True
            edge_r, edge_c = np.nonzero(_grow(vertex))
            gi, gj = i0 + edge_c, j0 + (n - 1 - edge_r)
            shapely.prepare(local)
            squares = shapely.box(gi * d, gj * d, (gi + 1) * d, (gj + 1) * d)
            inside[edge_r, edge_c] = shapely.intersects(local, squares) & ~shapely.touches(local, squares)
        rows, cols = np.nonzero(inside)
        return list(zip((i0 + cols).tolist(), (j0 + (n - 1 - rows)).tolist(), strict=True))

    def cell_key(self, crs: str, i: int, j: int) -> str:
        return f"{self._cell_prefix(crs)}{i}_{j}"

    def _cell_prefix(self, crs: str) -> str:
        return f"{sanitize_key(self.name)}-{self._zone_code(crs)}_c"  # only digits, '_' and '-' follow it

    def cell_geobox(self, crs: str, i: int, j: int) -> GeoBox:
        px = round(self.cell_m / self.res_m)
        return GeoBox((px, px), Affine(self.res_m, 0, i * self.cell_m, 0, -self.res_m, (j + 1) * self.cell_m), crs)

    def cells(self, chunk: Chunk | str, aoi: BaseGeometry, zone_part: BaseGeometry | None = None) -> list[Cell]:
        """The chunk's cells with their exact GeoBoxes, enumerated from the chunk key and the AOI."""
        chunk = self.chunk(chunk) if isinstance(chunk, str) else chunk
        part = zone_part if zone_part is not None else self.zone_of(chunk.crs, aoi)
        px, prefix = round(self.cell_m / self.res_m), self._cell_prefix(chunk.crs)
        return [Cell(f"{prefix}{i}_{j}", chunk.crs, i * self.cell_m, (j + 1) * self.cell_m, px, px, self.res_m)
                for i, j in self.cell_indices(chunk, part)]

    def zone_geobox(self, crs: str, zone_part: BaseGeometry) -> GeoBox:
        """The cube of one zone: the AOI part's bounds rounded out to whole chunks (same for every chunk)."""
        size = self.chunk_cells * self.cell_m
        min_x, min_y, max_x, max_y = zone_part.bounds
        x0, x1 = math.floor(min_x / size) * size, math.ceil(max_x / size) * size
        y0, y1 = math.floor(min_y / size) * size, math.ceil(max_y / size) * size
        shape = (round((y1 - y0) / self.res_m), round((x1 - x0) / self.res_m))
        return GeoBox(shape, Affine(self.res_m, 0, x0, 0, -self.res_m, y1), crs)

    def layout(self, chunk: Chunk | str, aoi: BaseGeometry, cube: GeoBox | None = None,
               zone_part: BaseGeometry | None = None) -> CubeLayout:
        """The chunk's part of its zone cube: the cube's GeoBox (from the whole AOI, or as stored in the grid
        table when ``aoi`` is only the chunk's part of it) and the regions of this chunk's cells only; sharded,
        the regions of the shards holding at least one of its cells (keys ``..._s<i>_<j>``, shard indices)."""
        chunk = self.chunk(chunk) if isinstance(chunk, str) else chunk
        part = zone_part if zone_part is not None else self.zone_of(chunk.crs, aoi)
        cube = cube if cube is not None else self.zone_geobox(chunk.crs, part)
        x0, y1 = cube.affine.c, cube.affine.f
        step = self.cell_m * self.shard_cells
        prefix = self._cell_prefix(chunk.crs) if self.shard_cells == 1 else f"{sanitize_key(self.name)}-{self._zone_code(chunk.crs)}_s"
        px = round(step / self.res_m)
        indices = np.array(self.cell_indices(chunk, part), dtype=np.int64).reshape(-1, 2) // self.shard_cells
        indices = np.unique(indices, axis=0) if self.shard_cells > 1 else indices
        rows = np.rint((y1 - (indices[:, 1] + 1) * step) / self.res_m).astype(np.int64).tolist()
        cols = np.rint((indices[:, 0] * step - x0) / self.res_m).astype(np.int64).tolist()
        regions = {f"{prefix}{i}_{j}": (slice(r, r + px), slice(c, c + px))
                   for (i, j), r, c in zip(indices.tolist(), rows, cols, strict=True)}
        return CubeLayout(geobox=cube, chunk_px=self.chunk_px, regions=regions, shard_px=self.shard_px)


@dataclass(frozen=True)
class MajorTomTiling:
    """ESA Major TOM cells of about ``d`` metres; chunks are ``chunk_deg`` lon/lat boxes and a cell belongs to
    the chunk holding its centre. Each cell's GeoBox is exact: its own UTM zone, rounded out to whole pixels."""

    name: str = "majortom"
    d: int = 1000
    res_m: float = 10.0
    overlap: bool = False
    chunk_deg: float = 2.0
    chunks_per_side: int = 1  # zarr chunks per cell side (1: a cell's month is one object)

    def description(self) -> dict:
        return {"kind": "majortom", **asdict(self)}

    @classmethod
    def from_description(cls, description: dict) -> MajorTomTiling:
        names = ("name", "d", "res_m", "overlap", "chunk_deg", "chunks_per_side")
        return cls(**{k: description[k] for k in names})

    def _grid(self):
        from majortom_eg import MajorTomGrid

        return MajorTomGrid(d=self.d, overlap=self.overlap)

    def chunk_key(self, ix: int, iy: int) -> str:
        return sanitize_key(f"{self.name}-{ix}_{iy}")

    def chunks(self, aoi: BaseGeometry) -> Iterator[Chunk]:
        """Every chunk holding a cell that meets the AOI (its box grown by one cell meets the AOI, and an edge
        chunk's cells are enumerated to be sure)."""
        size = self.chunk_deg
        west, south, east, north = aoi.bounds
        margin = self.d / METRES_PER_DEGREE / max(0.05, math.cos(math.radians(min(89.0, max(abs(south), abs(north))))))
        ixs = np.arange(math.floor((west - margin + 180) / size), math.ceil((east + margin + 180) / size))
        iys = np.arange(math.floor((south - margin + 90) / size), math.ceil((north + margin + 90) / size))
        gx, gy = (a.ravel() for a in np.meshgrid(ixs, iys))
        lon0, lat0 = gx * size - 180, gy * size - 90
        boxes = shapely.box(lon0 - margin, lat0 - margin, lon0 + size + margin, lat0 + size + margin)
        shapely.prepare(aoi)
        inside = shapely.contains(aoi, shapely.box(lon0, lat0, lon0 + size, lat0 + size))
        hits = shapely.intersects(aoi, boxes)
        for ix, iy, whole in zip(*(a[hits].tolist() for a in (gx, gy, inside)), strict=True):
            chunk = self.chunk(self.chunk_key(ix, iy))
            if whole or len(self._footprints(chunk, aoi)[0]):  # an edge chunk may hold no cell that meets the AOI
                yield chunk

    def chunk(self, key: str) -> Chunk:
        try:
            ix, iy = (int(v) for v in key.removeprefix(f"{self.name}-").split("_"))
        except ValueError as error:
            raise GridError(f"chunk {key!r} is not a chunk key of grid {self.name!r} ({self.name}-<ix>_<iy>)") from error
        size = self.chunk_deg
        return Chunk(key, self.name, "EPSG:4326", ix, iy, (ix * size - 180, iy * size - 90, (ix + 1) * size - 180, (iy + 1) * size - 90))

    def reach(self, chunk: Chunk) -> tuple[float, float, float, float]:
        """The chunk's box grown by one cell: it holds every cell centred in the chunk, so the AOI's part inside
        it is all the chunk's cells need (the grid table's geometry of a Major TOM chunk)."""
        west, south, east, north = chunk.bounds
        lat_m = self.d / METRES_PER_DEGREE
        lon_m = lat_m / max(0.05, math.cos(math.radians(min(89.0, max(abs(south), abs(north)) + lat_m))))
        return (west - lon_m, south - lat_m, east + lon_m, north + lat_m)

    def cell_footprints(self, chunk: Chunk | str, aoi: BaseGeometry) -> list[tuple[str, bool, tuple[float, float, float, float]]]:
        """(geohash id, is_primary, lon/lat bounds) of the Major TOM cells centred in the chunk that meet the AOI."""
        ids, primary, bounds = self._footprints(chunk, aoi)
        return list(zip(ids.tolist(), primary.tolist(), map(tuple, bounds.tolist()), strict=True))

    def _footprints(self, chunk: Chunk | str, aoi: BaseGeometry) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``cell_footprints`` as arrays (ids, is_primary, bounds rows), sorted by id."""
        chunk = self.chunk(chunk) if isinstance(chunk, str) else chunk
        west, south, east, north = chunk.bounds
        grown = box(*self.reach(chunk))
        reach = aoi.intersection(grown)
        grid, records = self._grid(), []
        for part in getattr(reach, "geoms", [reach]):
            if part.is_empty or part.area == 0:
                continue
            polygon = part if part.geom_type == "Polygon" else part.convex_hull
            # the native records (id, is_primary, bounds): the facade's GridCell per cell cost a fifth of the plan
            records += grid._native.generate_grid_cells(list(map(tuple, shapely.get_coordinates(polygon.exterior).tolist())))
        if not records:
            return np.array([], str), np.array([], bool), np.empty((0, 4))
        ids, first = np.unique(np.array([r[0] for r in records]), return_index=True)
        bounds = np.array([r[2:] for r in records], float)[first]
        primary = np.array([r[1] for r in records], bool)[first]
        cx, cy = (bounds[:, 0] + bounds[:, 2]) / 2, (bounds[:, 1] + bounds[:, 3]) / 2
        keep = np.nonzero((west <= cx) & (cx < east) & (south <= cy) & (cy < north))[0]
        if not reach.equals(grown):  # else every cell centred in the chunk lies in the AOI: no exact test needed
            squares = shapely.box(*bounds[keep].T)
            shapely.prepare(aoi)
            keep = keep[shapely.intersects(aoi, squares) & ~shapely.touches(aoi, squares)]
        return ids[keep], primary[keep], bounds[keep]

    def cell_grids(self, bounds: np.ndarray) -> list[tuple[str, float, float, int, int]]:
        """Per lon/lat box (rows of west, south, east, north): (UTM CRS of its centre, left, top, width, height) of
        the box projected into that zone (5 points per edge, grown by EDGE_PAD_M for the curvature between
        them: 0.3 m on a 10 km cell at 70 N) and rounded out to whole pixels: it holds the box."""
        bounds = np.asarray(bounds, float).reshape(-1, 4)
        t = np.linspace(0, 1, 5)[:-1]  # each edge without its last point, the next edge's first
        west, south, east, north = (bounds[:, k : k + 1] for k in range(4))
        lon = np.hstack([west + (east - west) * t, np.broadcast_to(east, (len(bounds), t.size)),
                         east - (east - west) * t, np.broadcast_to(west, (len(bounds), t.size))])
        lat = np.hstack([np.broadcast_to(south, (len(bounds), t.size)), south + (north - south) * t,
                         np.broadcast_to(north, (len(bounds), t.size)), north - (north - south) * t])
        zone = np.clip(np.floor(((west + east)[:, 0] / 2 + 180) / 6).astype(np.int64) + 1, 1, 60)
        epsg = np.where((south + north)[:, 0] >= 0, 32600, 32700) + zone  # utm_epsg of each centre
        r, out = self.res_m, [None] * len(bounds)
        for code in np.unique(epsg):
            rows = np.nonzero(epsg == code)[0]
            x, y = _transformer("EPSG:4326", f"EPSG:{code}").transform(lon[rows], lat[rows])
            pad = EDGE_PAD_M
            left, bottom = np.floor((x.min(axis=1) - pad) / r) * r, np.floor((y.min(axis=1) - pad) / r) * r
            right, top = np.ceil((x.max(axis=1) + pad) / r) * r, np.ceil((y.max(axis=1) + pad) / r) * r
            widths = np.rint((right - left) / r).astype(np.int64).tolist()
            heights = np.rint((top - bottom) / r).astype(np.int64).tolist()
            crs = f"EPSG:{code}"
            for row, *values in zip(rows.tolist(), left.tolist(), top.tolist(), widths, heights, strict=True):
                out[row] = (crs, *values)
        return out

    def cell_geobox(self, bounds: tuple[float, float, float, float]) -> GeoBox:
        """One lon/lat box's exact GeoBox (see ``cell_grids``)."""
        crs, left, top, width, height = self.cell_grids(np.array([bounds]))[0]
        return GeoBox((height, width), Affine(self.res_m, 0, left, 0, -self.res_m, top), crs)

    def cells(self, chunk: Chunk | str, aoi: BaseGeometry) -> list[Cell]:
        """The chunk's cells with exact pixel grids; overlap cells (not primary) are layer 1."""
        ids, primary, bounds = self._footprints(chunk, aoi)
        prefix = f"{sanitize_key(self.name)}-"  # geohash ids are [0-9a-z]: safe as they are
        return [Cell(prefix + cell_id, crs, left, top, width, height, self.res_m, 0 if first_layer else 1)
                for cell_id, first_layer, (crs, left, top, width, height)
                in zip(ids.tolist(), primary.tolist(), self.cell_grids(bounds), strict=True)]


    def layer_name(self, layer: int) -> str:
        """The store of a layer: the grid's name for the primary cells, ``<name>_overlap`` for the offset ones."""
        return self.name if layer == 0 else f"{self.name}_overlap"

    def cell_stores(self, chunk: Chunk | str, aoi: BaseGeometry) -> Mapping[str, CellStore]:
        """Per cell of the chunk, its own image: a store ``<chunk>/<cell>`` under its layer's folder whose one
        region is the cell's exact GeoBox (its UTM zone and origin), chunked ``chunks_per_side`` times per side."""
        chunk = self.chunk(chunk) if isinstance(chunk, str) else chunk
        cells = {cell.key: cell for cell in self.cells(chunk, aoi)}
        return CellStores(cells, lambda key: self.cell_store(chunk.key, cells[key]))

    def cell_store(self, chunk_key: str, cell: Cell) -> CellStore:
        px = -(-max(cell.width, cell.height) // self.chunks_per_side)
        layout = CubeLayout(geobox=cell.geobox, chunk_px=px, regions={cell.key: (slice(0, cell.height), slice(0, cell.width))})
        return CellStore(self.layer_name(cell.layer), f"{chunk_key}/{cell.key}", layout)


class CellStores(Mapping):
    """A chunk's cells, each one's ``CellStore`` made when asked: a cached chunk holds its cells (pixel grids
    or regions of one layout), not 10-40k GeoBoxes and layouts for the collector to walk."""

    def __init__(self, cells: Mapping, store: Callable[[str], CellStore]):
        self._cells, self._store = cells, store

    def __getitem__(self, key: str) -> CellStore:
        if key not in self._cells:
            raise KeyError(key)
        return self._store(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)


@dataclass(frozen=True)
class CellStore:
    """Where one cell of a tiled chunk is written: the cube ``cube`` itself (``path`` empty: a square cell's region of
    its zone cube) or a store of its own under the cube's folder (``path`` ``<chunk>/<cell>``: a Major TOM cell's
    image), with the layout of that store holding this cell's region only."""

    cube: str
    path: str
    layout: CubeLayout


def chunk_table(tiling: SquareTiling | MajorTomTiling, aoi: BaseGeometry):
    """The grid asset's rows: one per chunk (key, grid, crs, indices, bounds, EPSG:4326 footprint), streamed
    from the tiling; the description travels beside it, the cells are never listed."""
    import geopandas as gpd

    rows, footprints = [], []
    for chunk in tiling.chunks(aoi):
        rows.append({"grid": chunk.grid, "chunk": chunk.key, "crs": chunk.crs, "ix": chunk.ix, "iy": chunk.iy,
                     "x0": chunk.bounds[0], "y0": chunk.bounds[1], "x1": chunk.bounds[2], "y1": chunk.bounds[3]})
        footprints.append(box(*tiling.reach(chunk)) if isinstance(tiling, MajorTomTiling) else project(box(*chunk.bounds), "EPSG:4326",
                          source=chunk.crs, max_segment=(chunk.bounds[2] - chunk.bounds[0]) / 16))
    if not rows:
        raise GridError(f"grid {tiling.name!r}: no chunk meets the AOI {aoi.bounds}")
    frame = gpd.GeoDataFrame(rows, geometry=footprints, crs="EPSG:4326")
    frame["geometry"] = frame.geometry.intersection(aoi)
    return frame


def tiled_grid(tiling: SquareTiling | MajorTomTiling, aoi: BaseGeometry):
    """The grid asset's rows of a tiled grid: one per chunk, with the columns of a cell grid (grid, chunk, cell_id,
    is_primary, area_km2, crs, resolution), the tiling's description (JSON), the ``cube`` (store) it writes and the
    chunk's part of the AOI as geometry: all a run needs to enumerate the chunk's cells, without the AOI and
    without a row per cell. A square chunk also carries its zone cube's GeoBox (origin and shape) and chunk_px."""
    import json

    table = chunk_table(tiling, aoi)
    table["cell_id"] = table["chunk"]
    table["is_primary"] = True
    table["resolution"] = float(tiling.res_m)
    table["tiling"] = json.dumps(tiling.description())
    if isinstance(tiling, MajorTomTiling):
        table["area_km2"] = (table.geometry.to_crs(table.estimate_utm_crs()).area / 1e6).round(6).to_numpy()
        table["cube"] = tiling.name  # the primary layer's store; the overlap layer's is layer_name(1)
        return table
    cubes = {crs: tiling.zone_geobox(crs, part) for crs, part in tiling.zones(aoi)}
    table["area_km2"] = [round(float(box(*b).area) / 1e6, 6) for b in zip(table.x0, table.y0, table.x1, table.y1, strict=True)]
    table["chunk_px"] = tiling.chunk_px
    table["cube"] = [f"{tiling.name}_{tiling._zone_code(crs)}" for crs in table["crs"]]
    for column, values in (("cube_x0", [cubes[c].affine.c for c in table["crs"]]), ("cube_y1", [cubes[c].affine.f for c in table["crs"]]),
                           ("cube_height", [cubes[c].shape[0] for c in table["crs"]]), ("cube_width", [cubes[c].shape[1] for c in table["crs"]])):
        table[column] = values
    return table


def row_cells(row) -> Mapping[str, CellStore]:
    """Per cell of a tiled grid row's chunk (see ``tiled_grid``), where it is written: a square cell as its region
    of the zone cube, a Major TOM cell as its own image. Enumerated once per process and chunk: a run's planning,
    its metadata and its checks all ask (a 2-degree Major TOM chunk takes seconds), so the mapping is shared, read-only."""
    import json

    if json.loads(row["tiling"]).get("kind") == "majortom":  # its own stores: no zone cube (NaN in a mixed table)
        return _chunk_cells(row["tiling"], row["chunk"], row.geometry.wkb, ())
    cube = tuple(row[k] for k in ("cube", "crs", "cube_x0", "cube_y1", "cube_height", "cube_width"))
    return _chunk_cells(row["tiling"], row["chunk"], row.geometry.wkb, cube)


@contextmanager
def _collector_paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@lru_cache(maxsize=16)
def _chunk_cells(tiling: str, chunk: str, part_wkb: bytes, cube: tuple) -> Mapping[str, CellStore]:
    import json

    # a chunk's 10-40k cells (pixel grids, or regions of the zone cube) are as many new objects without cycles:
    # the collector's passes over them took about a third of the time of a square chunk
    with _collector_paused():
        description, part = json.loads(tiling), shapely.from_wkb(part_wkb)
        if not cube:
            return MajorTomTiling.from_description(description).cell_stores(chunk, part)
        tiling_ = SquareTiling.from_description(description)
        name, crs, x0, y1, height, width = cube
        r = tiling_.res_m
        layout = tiling_.layout(chunk, part, GeoBox((int(height), int(width)), Affine(r, 0, float(x0), 0, -r, float(y1)), crs))
        return CellStores(layout.regions, lambda cell: CellStore(str(name), "", replace(layout, regions={cell: layout.regions[cell]})))
