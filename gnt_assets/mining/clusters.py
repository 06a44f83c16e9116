"""The seed's mine clustering, with an STRtree instead of an all-pairs overlap matrix.

Rule (seed): every mine's envelope is grown by a square buffer (0.05 degrees);
two mines belong together when their envelopes intersect by more than 75% of
either envelope's area; clusters are the connected components. A cluster's
footprint (its one export query) is the union of its envelopes, and its export
region is the footprint's bounds snapped outwards to whole world tiles.

Mines crossing the antimeridian are unwrapped (western parts shifted by +360)
so their envelope stays small; such clusters have ``maxx > 180`` and their tiles
lie on both sides of 180 degrees.
"""

from __future__ import annotations

import hashlib

import geopandas as gpd
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from gnt_assets.core.worldgrid import WORLD, tiles_covering

BUFFER_DEGREES = 0.05
OVERLAP_SHARE = 0.75

SCHEMA = pa.DataFrameSchema(
    {
        "cluster_id": pa.Column(str, pa.Check.str_matches(r"^[0-9a-f]{64}$"), unique=True),
        "country": pa.Column(str, pa.Check.str_matches(r"^[A-Z]{3}$")),
        "minx": pa.Column(float, pa.Check.in_range(-180, 540)),
        "miny": pa.Column(float, pa.Check.in_range(-90, 90)),
        "maxx": pa.Column(float, pa.Check.in_range(-180, 540)),
        "maxy": pa.Column(float, pa.Check.in_range(-90, 90)),
        "n_mines": pa.Column(int, pa.Check.ge(1)),
        "crosses_antimeridian": pa.Column(bool),
        "tiles": pa.Column(None, pa.Check(lambda s: _lengths(s) > 0, element_wise=False)),
        "mine_ids": pa.Column(None, pa.Check(lambda s: _lengths(s) > 0, element_wise=False)),
    },
    checks=[pa.Check(lambda df: (df.minx < df.maxx) & (df.miny < df.maxy), name="region is not empty")],
)


def unwrapped_bounds(geometries: np.ndarray) -> np.ndarray:
    """(n, 4) bounds; a geometry touching both +-180 (split at the antimeridian) gets its west part moved east."""
    bounds = shapely.bounds(geometries)
    for i in np.nonzero((bounds[:, 0] <= -179.0) & (bounds[:, 2] >= 179.0))[0]:
        parts = shapely.get_parts(geometries[i])
        shifted = [shapely.affinity.translate(p, 360.0) if p.bounds[2] <= 0 else p for p in parts]
        bounds[i] = shapely.bounds(shapely.union_all(shifted))
    return bounds


def envelopes(bounds: np.ndarray, buffer: float) -> np.ndarray:
    """Envelope of a square (mitred) buffer = the bounds grown by ``buffer``."""
    return bounds + np.array([-buffer, -buffer, buffer, buffer])


def cluster_labels(env: np.ndarray, share: float = OVERLAP_SHARE) -> np.ndarray:
    """Connected-component label per envelope under the overlap rule, via STRtree candidate pairs."""
    tree = shapely.STRtree(shapely.box(*env.T))
    left, right = tree.query(shapely.box(*env.T), predicate="intersects")
    keep = left < right
    left, right = left[keep], right[keep]
    width = np.minimum(env[left, 2], env[right, 2]) - np.maximum(env[left, 0], env[right, 0])
    height = np.minimum(env[left, 3], env[right, 3]) - np.maximum(env[left, 1], env[right, 1])
    overlap = np.clip(width, 0, None) * np.clip(height, 0, None)
    area = (env[:, 2] - env[:, 0]) * (env[:, 3] - env[:, 1])
    linked = overlap > share * np.minimum(area[left], area[right])
    n = len(env)
    graph = coo_matrix((np.ones(linked.sum()), (left[linked], right[linked])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def snap_out(bounds: np.ndarray) -> np.ndarray:
    """(n, 4) bounds grown to whole 64 x 64 world tiles (maxx may pass 180 for unwrapped clusters)."""
    a = WORLD.affine
    tile = 64 * a.a
    col0 = np.floor((bounds[:, 0] - a.c) / tile + 1e-9)
    col1 = np.ceil((bounds[:, 2] - a.c) / tile - 1e-9)
    row0 = np.floor((a.f - bounds[:, 3]) / tile + 1e-9)
    row1 = np.ceil((a.f - bounds[:, 1]) / tile - 1e-9)
    return np.c_[a.c + col0 * tile, a.f - row1 * tile, a.c + col1 * tile, a.f - row0 * tile]


def _tiles_unwrapped(minx: float, miny: float, maxx: float, maxy: float) -> list[list[int]]:
    """Tiles west and east of the antimeridian for an unwrapped region (maxx > 180)."""
    west, east = ((minx + 180.0) % 360.0) - 180.0, ((maxx + 180.0) % 360.0) - 180.0
    return [list(t) for t in tiles_covering((west, miny + 1e-9, east, maxy - 1e-9))]


def _nested(offsets: np.ndarray, pairs: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Arrow list<list<int64>> column from flat (n, 2) pairs and per-row offsets (no Python object per pair)."""
    inner = pyarrow.ListArray.from_arrays(pyarrow.array(np.arange(0, 2 * len(pairs) + 1, 2, dtype=np.int32)), pyarrow.array(pairs.ravel()))
    return pd.arrays.ArrowExtensionArray(pyarrow.ListArray.from_arrays(pyarrow.array(offsets.astype(np.int32)), inner))


def region_tiles(regions: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Per tile-aligned region, its [ix, iy] tiles, rows north to south, columns west to east.

    Built for all regions at once: 45k clusters hold millions of tiles, too many for Python lists.
    """
    a = WORLD.affine
    tile = 64 * a.a
    col0 = np.rint((regions[:, 0] - a.c) / tile).astype(np.int64)
    ncols = np.rint((regions[:, 2] - a.c) / tile).astype(np.int64) - col0
    row0 = np.rint((a.f - regions[:, 3]) / tile).astype(np.int64)
    nrows = np.rint((a.f - regions[:, 1]) / tile).astype(np.int64) - row0
    counts = ncols * nrows
    ends = np.cumsum(counts)
    local = np.arange(ends[-1] if len(ends) else 0) - np.repeat(ends - counts, counts)
    width = np.repeat(ncols, counts)
    pairs = np.c_[np.repeat(col0, counts) + local % width, np.repeat(row0, counts) + local // width]
    unwrapped = np.nonzero(regions[:, 2] > 180.0)[0]
    if len(unwrapped):
        parts = np.split(pairs, ends[:-1])
        for i in unwrapped:
            parts[i] = np.array(_tiles_unwrapped(*regions[i].tolist()), dtype=np.int64).reshape(-1, 2)
            counts[i] = len(parts[i])
        pairs = np.concatenate(parts)
    return _nested(np.r_[0, np.cumsum(counts)], pairs)


def _lengths(column: pd.Series) -> pd.Series:
    """List lengths of an Arrow list column (as built) or an object column (as read back)."""
    return column.list.len() if isinstance(column.dtype, pd.ArrowDtype) else column.map(len)


def cluster_ids(country: str, footprints: np.ndarray) -> list[str]:
    """sha256 of country + normalized footprint: the same mines always give the same id."""
    texts = shapely.to_wkt(shapely.normalize(footprints), rounding_precision=9)
    # the JSON text {"country": ..., "footprint": ...}, formatted directly (WKT needs no escaping)
    return [hashlib.sha256(f'{{"country": "{country}", "footprint": "{t}"}}'.encode()).hexdigest() for t in texts]


def cluster_country(mines: gpd.GeoDataFrame, country: str, buffer: float = BUFFER_DEGREES) -> gpd.GeoDataFrame:
    """One row per cluster of the country's mines (``mine_id`` and geometry columns in EPSG:4326).

    The result follows :data:`SCHEMA`, which the clusters asset's blocking check validates on the stored table.
    """
    mines = mines[mines["ISO3_CODE"] == country]
    if mines.empty:
        raise ValueError(f"country {country}: no valid mine polygons with ISO3_CODE {country!r}")
    env = envelopes(unwrapped_bounds(mines.geometry.to_numpy()), buffer)
    labels = cluster_labels(env)
    order = np.lexsort((*env.T[::-1], labels))  # members grouped by cluster, in a row-order-free order
    starts = np.r_[0, np.nonzero(np.diff(labels[order]))[0] + 1]
    counts = np.diff(np.r_[starts, len(order)])
    bounds = np.c_[
        np.minimum.reduceat(env[order, 0], starts), np.minimum.reduceat(env[order, 1], starts),
        np.maximum.reduceat(env[order, 2], starts), np.maximum.reduceat(env[order, 3], starts),
    ]
    footprints = shapely.box(*bounds.T)
    boxes = shapely.box(*env[order].T)  # member envelopes, grouped by cluster
    for i in np.nonzero(counts > 1)[0]:
        footprints[i] = shapely.union_all(boxes[starts[i] : starts[i] + counts[i]])
    regions = snap_out(bounds)
    ids = mines["mine_id"].to_numpy()
    by_id = np.lexsort((ids, labels))  # same clusters in the same (label) order as ``order``, members by id
    records = {
        "cluster_id": cluster_ids(country, footprints),
        "country": country,
        "minx": regions[:, 0], "miny": regions[:, 1], "maxx": regions[:, 2], "maxy": regions[:, 3],
        "n_mines": counts.astype(int),
        "crosses_antimeridian": regions[:, 2] > 180.0,
        "tiles": region_tiles(regions),
        "mine_ids": pd.arrays.ArrowExtensionArray(pyarrow.ListArray.from_arrays(pyarrow.array(np.r_[starts, len(order)].astype(np.int32)), pyarrow.array(ids[by_id]))),
        "geometry": footprints,
    }
    clusters = gpd.GeoDataFrame(records, geometry="geometry", crs="EPSG:4326")
    return clusters.sort_values("cluster_id", ignore_index=True)
