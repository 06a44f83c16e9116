"""The mining seed's world grid: 0.000269495 degree pixels (about 30 m) in 64 x 64 pixel tiles.

Every export, region and training tile is cut from this one grid, so pixels line
up everywhere without resampling. Tiles are addressed by ``(ix, iy)``: ``ix``
counts columns west to east from -180 degrees, ``iy`` rows north to south from
90 degrees. All positions are computed in whole pixels from the world GeoBox's
affine, never by reprojecting to an extent (the seed's reprojection to a tile
extent gave 65 x 65 pixels).

The world GeoBox is ``GeoBox.from_bbox((-180, -90, 180, 90), resolution=0.000269495,
crs=4326)``: 1,335,832 x 667,916 pixels, so the last column and row of tiles reach
a few pixels past 180 E / 90 S. Tiles are always full 64 x 64 GeoBoxes on the grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from affine import Affine
from odc.geo.geobox import GeoBox

from gnt_assets.core.errors import InputError

RESOLUTION = 0.000269495
TILE_SIZE = 64
WORLD = GeoBox.from_bbox((-180, -90, 180, 90), crs="EPSG:4326", resolution=RESOLUTION)
TILE_COLUMNS = math.ceil(WORLD.shape.x / TILE_SIZE)
TILE_ROWS = math.ceil(WORLD.shape.y / TILE_SIZE)

BBox = tuple[float, float, float, float]


class WorldGridError(InputError):
    """A tile index or box that is not on the world grid."""


def _pixel(lon: float, lat: float) -> tuple[int, int]:
    """Column and row of the pixel containing a point (west and north edges inclusive)."""
    col, row = ~WORLD.affine @ (lon, lat)
    return math.floor(col + 1e-9), math.floor(row + 1e-9)


def normalize_longitude(lon: float) -> float:
    """Longitude in [-180, 180)."""
    return ((lon + 180.0) % 360.0) - 180.0


def check_tile(ix: int, iy: int) -> None:
    if not (0 <= ix < TILE_COLUMNS and 0 <= iy < TILE_ROWS):
        raise WorldGridError(f"world tile ({ix}, {iy}) is outside the grid of {TILE_COLUMNS} x {TILE_ROWS} tiles")


def world_tile(ix: int, iy: int) -> GeoBox:
    """Tile ``(ix, iy)`` as a 64 x 64 GeoBox whose pixels are world pixels."""
    check_tile(ix, iy)
    return GeoBox((TILE_SIZE, TILE_SIZE), WORLD.affine @ Affine.translation(ix * TILE_SIZE, iy * TILE_SIZE), WORLD.crs)


def tile_of_point(lon: float, lat: float) -> tuple[int, int]:
    """The one tile containing a point; points on a tile edge belong to the tile east / south of it."""
    if not -90.0 <= lat <= 90.0:
        raise WorldGridError(f"latitude {lat} is outside [-90, 90]")
    col, row = _pixel(normalize_longitude(lon), lat)
    return min(col // TILE_SIZE, TILE_COLUMNS - 1), min(max(row, 0) // TILE_SIZE, TILE_ROWS - 1)


def split_antimeridian(bbox: BBox) -> list[BBox]:
    """A box with ``minx > maxx`` crosses 180 degrees; return it as one or two ordinary boxes."""
    minx, miny, maxx, maxy = bbox
    if miny > maxy:
        raise WorldGridError(f"box {bbox} has miny > maxy")
    if minx <= maxx:
        return [bbox]
    return [(minx, miny, 180.0, maxy), (-180.0, miny, maxx, maxy)]


def _tile_ranges(bbox: BBox) -> tuple[range, range]:
    minx, miny, maxx, maxy = bbox
    left, top = _pixel(minx, min(maxy, 90.0))
    right, bottom = ~WORLD.affine @ (maxx, max(miny, -90.0))
    last_col = max(left, math.ceil(right - 1e-9) - 1)
    last_row = max(top, math.ceil(bottom - 1e-9) - 1)
    columns = range(max(left, 0) // TILE_SIZE, min(last_col // TILE_SIZE, TILE_COLUMNS - 1) + 1)
    rows = range(max(top, 0) // TILE_SIZE, min(last_row // TILE_SIZE, TILE_ROWS - 1) + 1)
    return columns, rows


def tiles_covering(bbox: BBox) -> list[tuple[int, int]]:
    """Every tile that shares area with the box, each once, sorted by (iy, ix).

    Boxes crossing the antimeridian are given with ``minx > maxx``.
    """
    tiles: set[tuple[int, int]] = set()
    for part in split_antimeridian(bbox):
        columns, rows = _tile_ranges(part)
        tiles.update((ix, iy) for iy in rows for ix in columns)
    return sorted(tiles, key=lambda tile: (tile[1], tile[0]))


def tile_span_geobox(columns: range, rows: range) -> GeoBox:
    """The GeoBox of a rectangle of whole tiles."""
    return GeoBox(
        (len(rows) * TILE_SIZE, len(columns) * TILE_SIZE),
        WORLD.affine @ Affine.translation(columns.start * TILE_SIZE, rows.start * TILE_SIZE),
        WORLD.crs,
    )


def region_geoboxes(bbox: BBox) -> list[GeoBox]:
    """The box snapped outwards to whole tiles: one GeoBox, or two across the antimeridian."""
    return [tile_span_geobox(*_tile_ranges(part)) for part in split_antimeridian(bbox)]


def tile_index_in(region: GeoBox) -> Iterator[tuple[int, int, GeoBox]]:
    """The world tiles of a tile-aligned region, with each tile's GeoBox."""
    col, row = ~WORLD.affine @ (region.affine.c, region.affine.f)
    col, row = round(col), round(row)
    if col % TILE_SIZE or row % TILE_SIZE or region.shape.x % TILE_SIZE or region.shape.y % TILE_SIZE:
        raise WorldGridError(f"region {region!r} is not aligned to whole world tiles")
    for iy in range(row // TILE_SIZE, (row + region.shape.y) // TILE_SIZE):
        for ix in range(col // TILE_SIZE, (col + region.shape.x) // TILE_SIZE):
            yield ix, iy, world_tile(ix, iy)
