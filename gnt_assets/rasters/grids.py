"""The grid registry: square equal-area grids and H3 hexagon grids over a study area.

Square cells live in EPSG:6933 (equal area, metres) and are numbered from the CRS's
global corner, ``C{res}_{i:05d}_{j:05d}``, so a cell keeps its id whatever the study area.
H3 cells are stored in lon/lat; cells crossing the antimeridian are split into two parts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import h3
import numpy as np
import shapely
import yaml
from pyproj import Transformer

from gnt_assets.core.errors import InputError

SQUARE_CRS = "EPSG:6933"
EASE_XMIN, EASE_YMAX = -17367530.44516138, 7314540.830638089
REGISTRY = Path(__file__).with_name("grids.yaml")


class GridError(InputError):
    """A grid definition or a grid/raster combination that cannot work."""


@dataclass(frozen=True)
class GridSpec:
    name: str
    kind: str
    resolution_m: float


def load_registry(path: Path = REGISTRY) -> tuple[tuple[float, float, float, float], list[GridSpec]]:
    data = yaml.safe_load(Path(path).read_text())
    grids = [GridSpec(g["name"], g["kind"], float(g["resolution_m"])) for g in data["grids"]]
    for grid in grids:
        if grid.kind not in ("square", "h3") or grid.resolution_m <= 0:
            raise GridError(f"{path}: grid {grid.name!r} needs kind square|h3 and a positive resolution_m")
    return tuple(data["study_area"]), grids


def h3_resolution(resolution_m: float) -> int:
    """The H3 resolution whose average hexagon (as a square of equal area) is nearest in size."""
    sizes = np.array([math.sqrt(h3.average_hexagon_area(r, unit="m^2")) for r in range(16)])
    return int(np.argmin(np.abs(np.log(sizes / resolution_m))))


def square_cells(study_area, resolution_m: float) -> gpd.GeoDataFrame:
    lon0, lat0, lon1, lat1 = study_area
    if lon0 > lon1:
        return gpd.GeoDataFrame(
            gpd.pd.concat([square_cells((lon0, lat0, 180, lat1), resolution_m), square_cells((-180, lat0, lon1, lat1), resolution_m)]).drop_duplicates("cell_id"),
            crs=SQUARE_CRS,
        )
    to_ease = Transformer.from_crs("EPSG:4326", SQUARE_CRS, always_xy=True)
    x0, y0, x1, y1 = to_ease.transform_bounds(lon0, lat0, lon1, lat1, densify_pts=21)
    i0, i1 = int((x0 - EASE_XMIN) // resolution_m), math.ceil((x1 - EASE_XMIN) / resolution_m)
    j0, j1 = int((EASE_YMAX - y1) // resolution_m), math.ceil((EASE_YMAX - y0) / resolution_m)
    i, j = np.meshgrid(np.arange(i0, i1), np.arange(j0, j1))
    i, j = i.ravel(), j.ravel()
    left, top = EASE_XMIN + i * resolution_m, EASE_YMAX - j * resolution_m
    geometry = shapely.box(left, top - resolution_m, left + resolution_m, top)
    res = int(resolution_m) if float(resolution_m).is_integer() else resolution_m
    ids = [f"C{res}_{a:05d}_{b:05d}" for a, b in zip(i, j, strict=False)]
    return gpd.GeoDataFrame({"cell_id": ids, "i": i, "j": j}, geometry=geometry, crs=SQUARE_CRS)


def _hexagon(cell: str):
    lat, lon = np.array(h3.cell_to_boundary(cell)).T
    if lon.max() - lon.min() <= 180:
        return shapely.Polygon(np.c_[lon, lat])
    shifted = shapely.Polygon(np.c_[np.where(lon < 0, lon + 360, lon), lat])
    east = shapely.clip_by_rect(shifted, -180, -90, 180, 90)
    west = shapely.affinity.translate(shapely.clip_by_rect(shifted, 180, -90, 540, 90), -360)
    return shapely.MultiPolygon([*shapely.get_parts(east), *shapely.get_parts(west)])


def hex_cells(study_area, resolution_m: float) -> gpd.GeoDataFrame:
    lon0, lat0, lon1, lat1 = study_area
    boxes = [(lon0, lon1)] if lon0 <= lon1 else [(lon0, 180.0), (-180.0, lon1)]
    res = h3_resolution(resolution_m)
    cells: set[str] = set()
    for a, b in boxes:
        # Covering, not centre-in: every cell touching the area (polygon_to_cells_experimental "overlap").
        shape = h3.LatLngPoly([(lat0, a), (lat0, b), (lat1, b), (lat1, a)])
        cells |= set(h3.h3shape_to_cells_experimental(shape, res, contain="overlap"))
    ids = sorted(cells)
    return gpd.GeoDataFrame({"cell_id": ids, "h3_resolution": res}, geometry=[_hexagon(c) for c in ids], crs="EPSG:4326")


def cell_centres(cells: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Each cell's true centre in the grid's CRS: H3's own cell centre for hexagons (a lon/lat
    centroid is biased and breaks on antimeridian-split cells), the centroid for square cells."""
    if "h3_resolution" in cells:
        lat, lon = np.array([h3.cell_to_latlng(c) for c in cells.cell_id]).reshape(-1, 2).T
        return gpd.GeoSeries(shapely.points(lon, lat), index=cells.index, crs=cells.crs)
    return cells.geometry.centroid


def grid_cells(spec: GridSpec, study_area) -> gpd.GeoDataFrame:
    cells = square_cells(study_area, spec.resolution_m) if spec.kind == "square" else hex_cells(study_area, spec.resolution_m)
    if cells.empty:
        raise GridError(f"grid {spec.name!r}: no cells over the study area {study_area}")
    return cells.reset_index(drop=True)
