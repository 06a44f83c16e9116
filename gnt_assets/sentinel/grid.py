"""Cell grid generators over an AOI, with the seed's API (GridSpec, square/custom generators; Major TOM grids
are tiled, see tiling.py).

A generator maps an AOI geometry (EPSG:4326) to a GeoDataFrame of cells with
``geometry`` and an id column; cells drive the cube layout (see cube.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandera.pandas as pa
import shapely
from pyproj import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from gnt_assets.core.errors import InputError
from gnt_assets.core.keys import sanitize_key

GridGenerator = Callable[[BaseGeometry], gpd.GeoDataFrame]
METRES_PER_DEGREE = 111_320.0
UTM = "utm"  # target_crs: the UTM zone of the AOI (per chunk in sentinel.tiling)
DENSIFY_DEG = 0.05  # the AOI gets a vertex at least every 0.05 degrees before it is projected


def resolve_crs(target_crs: str, aoi: BaseGeometry) -> str:
    """``'utm'`` -> the UTM zone of the AOI's centre (EPSG:326xx/327xx); any other CRS as given."""
    if target_crs != UTM:
        return target_crs
    point = aoi.centroid
    zone = min(60, max(1, math.floor((point.x + 180) / 6) + 1))
    return f"EPSG:{(32600 if point.y >= 0 else 32700) + zone}"


class GridError(InputError):
    pass


@dataclass(frozen=True)
class GridSpec:
    d: int = 512
    target_crs: str = "EPSG:32610"
    res_m: float = 16
    id_column: str = "grid_id"

    @property
    def resolution(self) -> float:
        """Pixel size in units of target_crs (degrees for a geographic CRS)."""
        if self.target_crs != UTM and CRS.from_user_input(self.target_crs).is_geographic:
            return self.res_m / METRES_PER_DEGREE
        return float(self.res_m)


def square_tiling_generator(cell_size_m: float = 512, work_crs: str = "EPSG:32610", id_column: str = "grid_id") -> GridGenerator:
    """Squares of cell_size_m in work_crs (``'utm'``: the AOI's UTM zone), edges on multiples of the size, kept
    where they touch the AOI."""

    def generate(aoi: BaseGeometry) -> gpd.GeoDataFrame:
        crs = resolve_crs(work_crs, aoi)
        # densified first: projecting only the vertices of a large AOI (a bbox: its four corners) changes its shape
        projected = gpd.GeoSeries([shapely.segmentize(aoi, DENSIFY_DEG)], crs="EPSG:4326").to_crs(crs).iloc[0]
        min_x, min_y, max_x, max_y = projected.bounds
        i0, i1 = math.floor(min_x / cell_size_m), math.ceil(max_x / cell_size_m)
        j0, j1 = math.floor(min_y / cell_size_m), math.ceil(max_y / cell_size_m)
        ids, geoms = [], []
        for i in range(i0, i1):
            for j in range(j0, j1):
                cell = box(i * cell_size_m, j * cell_size_m, (i + 1) * cell_size_m, (j + 1) * cell_size_m)
                if cell.intersects(projected):
                    ids.append(f"square_{i}_{j}")
                    geoms.append(cell)
        cells = gpd.GeoDataFrame({id_column: ids, "is_primary": True}, geometry=geoms, crs=crs)
        return cells.to_crs("EPSG:4326")

    return generate


def chunk_key(grid_name: str, cell_id: str) -> str:
    """A cell's partition key: the grid's name said once, then the cell id (``square_510_5685`` for the square
    grid's cell ``square_510_5685``, ``cells-a1`` for the cell ``a1`` of a custom grid ``cells``), sanitised."""
    named = cell_id == grid_name or cell_id.startswith((f"{grid_name}_", f"{grid_name}-"))
    return sanitize_key(cell_id if named else f"{grid_name}-{cell_id}")


def belongs_to(chunk: str, grid_name: str) -> bool:
    """Whether a chunk key is spelled as a key of the named grid (see ``chunk_key``)."""
    return chunk == grid_name or chunk.startswith((f"{grid_name}_", f"{grid_name}-"))


def refuse_shared_chunks(cells: gpd.GeoDataFrame) -> None:
    """Two grids whose cells would get the same partition key (rename one of the grids)."""
    shared = cells["chunk"][cells["chunk"].duplicated()]
    if not shared.empty:
        grids = sorted(set(cells["grid"][cells["chunk"].isin(shared)]))
        raise GridError(f"grids {grids}: cells share the partition keys {shared.tolist()[:5]}; give the grids distinct names")


def file_generator(path: str, id_column: str = "grid_id", layer: str | None = None) -> GridGenerator:
    """A custom grid from a vector file (GeoPackage, GeoParquet, GeoJSON, ...) with an id column: the cells
    that share area with the AOI."""

    def generate(aoi: BaseGeometry) -> gpd.GeoDataFrame:
        try:
            cells = gpd.read_parquet(path) if str(path).endswith(".parquet") else gpd.read_file(path, layer=layer)
        except Exception as error:
            raise GridError(f"custom grid {path}: cannot be read as a vector file ({error})") from error
        if id_column not in cells or cells.crs is None:
            raise GridError(f"custom grid {path}: needs a CRS and an id column {id_column!r} (columns: {list(cells.columns)})")
        cells = cells.to_crs("EPSG:4326")
        keep = cells.geometry.intersects(aoi) & ~cells.geometry.touches(aoi)
        return cells[keep][[id_column, *(["is_primary"] if "is_primary" in cells else []), "geometry"]]

    generate.__name__ = f"file {path}"
    return custom_generator(generate, id_column=id_column)


def custom_generator(func: Callable[[BaseGeometry], gpd.GeoDataFrame], id_column: str = "grid_id") -> GridGenerator:
    """Any function returning a GeoDataFrame with geometry and the id column (DGGS, ...)."""

    def generate(aoi: BaseGeometry) -> gpd.GeoDataFrame:
        cells = func(aoi)
        if not isinstance(cells, gpd.GeoDataFrame) or id_column not in cells or cells.crs is None:
            raise GridError(f"custom grid generator {func.__name__}: must return a GeoDataFrame with a CRS and {id_column!r}")
        cells = cells.to_crs("EPSG:4326")
        if "is_primary" not in cells:
            cells["is_primary"] = True
        return cells

    return generate


def grid_cells(aoi: BaseGeometry, generator: GridGenerator, *, grid_name: str, id_column: str = "grid_id") -> gpd.GeoDataFrame:
    """The generator's cells with a ``chunk`` partition key per cell (see ``chunk_key``)."""
    cells = generator(aoi)
    if cells.empty:
        raise GridError(f"grid {grid_name!r}: the generator produced zero cells for the AOI {aoi.bounds}")
    if cells[id_column].duplicated().any():
        raise GridError(f"grid {grid_name!r}: duplicate cell ids {cells[id_column][cells[id_column].duplicated()].tolist()[:5]}")
    cells = cells.sort_values(id_column).reset_index(drop=True)
    cells.insert(0, "grid", grid_name)
    cells.insert(1, "chunk", [chunk_key(grid_name, cell_id) for cell_id in cells[id_column].astype(str)])
    if cells["chunk"].duplicated().any():
        raise GridError(f"grid {grid_name!r}: cell ids collapse to the same partition key after sanitising")
    cells["cell_id"] = cells[id_column].astype(str)
    cells["area_km2"] = np.round(cells.to_crs(cells.estimate_utm_crs()).area / 1e6, 6)
    return cells[["grid", "chunk", "cell_id", "is_primary", "area_km2", "geometry"]]


GRID_SCHEMA = pa.DataFrameSchema(
    {
        "grid": pa.Column(str),
        "chunk": pa.Column(str, unique=True, checks=pa.Check.str_matches(r"^[A-Za-z0-9_.\-]+$")),
        "cell_id": pa.Column(str),
        "is_primary": pa.Column(bool),
        "area_km2": pa.Column(float, pa.Check.gt(0)),
        "crs": pa.Column(str),
        "resolution": pa.Column(float, pa.Check.gt(0)),
        "chunk_px": pa.Column(int, pa.Check.gt(0)),
    },
    strict=False,
)


def named_grid(aoi: BaseGeometry, name: str, kind: str, spec: GridSpec, chunks_per_side: int = 1,
               path: str = "", layer: str | None = None) -> gpd.GeoDataFrame:
    """Cells of one named grid plus the cube settings (crs, resolution, chunk_px) its layout needs;
    ``kind='custom'`` reads the cells from ``path`` (id column ``spec.id_column``)."""
    if kind == "square":
        generator = square_tiling_generator(cell_size_m=spec.d, work_crs=spec.target_crs, id_column=spec.id_column)
    elif kind == "custom":
        if not path:
            raise GridError(f"grid {name!r}: generator 'custom' needs 'path', a vector file of cells with an id column")
        generator = file_generator(path, spec.id_column, layer)
    else:
        raise GridError(f"grid {name!r}: unknown generator {kind!r} for a cell grid; use 'square', 'custom' (with 'path') "
                        "or custom_generator in code (Major TOM grids are tiled: sentinel.tiling.MajorTomTiling)")
    cells = grid_cells(aoi, generator, grid_name=name, id_column=spec.id_column)
    cells["crs"] = resolve_crs(spec.target_crs, aoi)
    cells["resolution"] = spec.resolution
    cells["chunk_px"] = int(max(1, spec.d / spec.res_m // chunks_per_side))
    return GRID_SCHEMA.validate(cells)
