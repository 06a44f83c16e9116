"""Training tiles: 64x64 world-grid tiles cut from a country-year zarr region, with mine labels.

Per tile (the seed's reprojection worker, without reprojecting: the region is
already on the world grid, so a tile is an exact 64x64 window, never 65x65):

* ``features`` float32 (7, 64, 64), bands blue..thermal, NaN replaced by 0;
* ``valid`` uint8 (1, 64, 64): 1 where all seven bands had a value, so a 0 in
  ``features`` from a NaN stays distinguishable from a real 0 (the index also
  counts ``valid_pixels``);
* ``labels`` uint8 (1, 64, 64): the mine polygons rasterized onto the tile with
  the *pixel-centre* rule (``all_touched=False``): a pixel is mine iff its centre
  lies inside a polygon. Small slivers that cover no centre are not labelled;
  the ``label_pixels`` column says how much of a tile is mine.

Each world tile is stored once per year however many clusters cover it (its
labels come from every mine anyway): ``cluster_ids`` lists the clusters covering
it, ``cluster_id`` and ``geometry_hash`` are those of the first. Tiles are
spooled to a temporary file as they are cut (``RecordSpool``), so memory does
not grow with the country's tile count. Tiles whose window has no data at all
(NaN-only) are left out and reported.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize
from upath import UPath

from gnt_assets.core.errors import InputError
from gnt_assets.core.packed_tensors import RecordSpool, TensorField, TensorPack
from gnt_assets.core.worldgrid import TILE_SIZE as TILE
from gnt_assets.core.worldgrid import world_tile
from gnt_assets.core.zarr_regions import StoreLayout, open_store, region_status, store_exists
from gnt_assets.mining.regions import BANDS

FIELDS = (
    TensorField("features", "<f4", (len(BANDS), TILE, TILE)),
    TensorField("labels", "|u1", (1, TILE, TILE)),
    TensorField("valid", "|u1", (1, TILE, TILE)),
)
LABEL_RULE = "pixel centre inside a mine polygon (rasterio all_touched=False)"


class TrainingTileError(InputError):
    """A region or tile that cannot give a complete, aligned training tile."""


@dataclass(frozen=True)
class ClusterTile:
    """One world-grid tile a cluster covers (its GeoBox made on demand: countries have tens of thousands)."""

    ix: int
    iy: int
    cluster_id: str
    geometry_hash: str

    @property
    def geobox(self) -> GeoBox:
        return world_tile(self.ix, self.iy)


@dataclass
class TileReport:
    nan_only: list[tuple[int, int]] = field(default_factory=list)
    polygons_without_tile: list[int] = field(default_factory=list)


def open_region(path: UPath, partition: str) -> xr.Dataset:
    """The region store, lazily; a missing store names the partition and what to run."""
    if not store_exists(path):
        raise TrainingTileError(f"{partition}: no zarr region at {path}; materialize landsat_regions for this partition first")
    return open_store(path)


def region_chunks_present(path: UPath, variable: str = "reflectance") -> Callable[[slice, slice], bool]:
    """Whether every stored object (chunk or shard) under a window of the region exists."""
    layout = StoreLayout.read(path)  # once: a country has tens of thousands of tiles

    def present(rows: slice, cols: slice) -> bool:
        status = region_status(path, {"latitude": rows, "longitude": cols}, [variable], layout)
        return status.present == status.expected

    return present


def cluster_tiles(clusters: gpd.GeoDataFrame) -> list[ClusterTile]:
    """Every (tile, cluster) pair of Mining I's clusters table (``tiles`` = list of [ix, iy])."""
    tiles = []
    for row in clusters.itertuples():
        cluster_id, hashed = str(row.cluster_id), geometry_hash(row.geometry)
        tiles.extend(ClusterTile(int(ix), int(iy), cluster_id, hashed) for ix, iy in row.tiles)
    return tiles


def geometry_hash(geometry: shapely.Geometry) -> str:
    """Stable hash of a geometry (normalized WKB), the seed's deduplication key."""
    return hashlib.sha256(shapely.to_wkb(shapely.normalize(geometry), hex=False)).hexdigest()[:16]


def tile_window(region: xr.Dataset, geobox: GeoBox, label: str) -> tuple[slice, slice]:
    """The region's (latitude, longitude) index window equal to ``geobox``, checked to the pixel."""
    latitude, longitude = region["latitude"].values, region["longitude"].values
    resolution = abs(geobox.affine.a)
    if len(latitude) < 2 or len(longitude) < 2 or not np.isclose(abs(longitude[1] - longitude[0]), resolution, rtol=1e-6):
        raise TrainingTileError(f"{label}: region grid spacing does not match the world grid ({resolution} deg)")
    centre_x = geobox.affine.c + geobox.affine.a / 2
    centre_y = geobox.affine.f + geobox.affine.e / 2
    col = (centre_x - longitude[0]) / (longitude[1] - longitude[0])
    row = (centre_y - latitude[0]) / (latitude[1] - latitude[0])
    if abs(col - round(col)) > 1e-3 or abs(row - round(row)) > 1e-3:
        raise TrainingTileError(f"{label}: region pixels are offset from the world grid by ({col % 1:.3f}, {row % 1:.3f}) px")
    col, row = round(col), round(row)
    height, width = geobox.shape.y, geobox.shape.x
    if row < 0 or col < 0 or row + height > len(latitude) or col + width > len(longitude):
        raise TrainingTileError(f"{label}: tile lies outside the region (window rows {row}..{row + height}, cols {col}..{col + width})")
    return slice(row, row + height), slice(col, col + width)


def tile_labels(polygons: Sequence[shapely.Geometry], geobox: GeoBox) -> np.ndarray:
    """(1, H, W) uint8 mine mask with the pixel-centre rule."""
    shape = (geobox.shape.y, geobox.shape.x)
    if not len(polygons):
        return np.zeros((1, *shape), np.uint8)
    mask = rasterize(((p, 1) for p in polygons), out_shape=shape, transform=geobox.affine, all_touched=False, dtype="uint8")
    return mask[np.newaxis]


def tile_features(window: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NaN->0 float32 features and the (1, H, W) all-bands-valid mask."""
    valid = np.isfinite(window).all(axis=0)
    return np.where(np.isfinite(window), window, 0).astype("<f4"), valid[np.newaxis].astype(np.uint8)


def training_tiles(
    region: xr.Dataset,
    tiles: Iterable[ClusterTile],
    polygons: Sequence[shapely.Geometry],
    *,
    partition: str,
    year: int,
    chunks_present: Callable[[slice, slice], bool],
    must_touch: Sequence[int] = (),
    spool_directory: str | None = None,
) -> tuple[TensorPack, TileReport]:
    """Every world tile the clusters of one country-year cover, once, as a ``TensorPack`` whose records
    are spooled to a temporary file in ``spool_directory`` (rows sorted by tile).

    ``polygons`` label the tiles (all mines, so a neighbour's mine across a border
    is labelled too); ``must_touch`` are the positions of this country's mines,
    reported when they touch no tile. ``chunks_present(rows, cols)`` says whether
    the region has written every chunk of a window: a tile over unwritten chunks
    means an incomplete region, and fails the partition.
    """
    tiles = sorted(tiles, key=lambda t: (t.iy, t.ix, t.cluster_id))
    if "reflectance" not in region:
        raise TrainingTileError(f"{partition}: region has no 'reflectance' variable (has {sorted(region.data_vars)})")
    bands = [str(b) for b in region["band"].values]
    if bands != list(BANDS):
        raise TrainingTileError(f"{partition}: region bands {bands} are not {list(BANDS)}")
    reflectance = region["reflectance"].transpose("band", "latitude", "longitude")
    polygons = list(polygons)
    tree = shapely.STRtree(polygons)
    touched: set[int] = set()
    report = TileReport()
    spool = RecordSpool(FIELDS, spool_directory)
    columns = ("tile_ix", "tile_iy", "year", "cluster_id", "cluster_ids", "geometry_hash", "valid_pixels", "label_pixels")
    rows: dict[str, list] = {k: [] for k in columns}
    for (ix, iy), covering in itertools.groupby(tiles, key=lambda t: (t.ix, t.iy)):
        covering = list(covering)
        first, geobox = covering[0], world_tile(ix, iy)
        label = f"{partition} tile ({ix}, {iy}) of cluster {first.cluster_id[:8]}"
        rows_window, cols_window = tile_window(region, geobox, label)
        if not chunks_present(rows_window, cols_window):
            raise TrainingTileError(f"{label}: the zarr region is missing chunks under this tile; re-materialize the region")
        features, valid = tile_features(reflectance.isel(latitude=rows_window, longitude=cols_window).values)
        hits = tree.query(shapely.box(*geobox.extent.boundingbox), predicate="intersects")
        touched.update(int(h) for h in hits)
        if not valid.any():
            report.nan_only.append((ix, iy))
            continue
        labels = tile_labels([polygons[h] for h in hits], geobox)
        spool.append({"features": features, "labels": labels, "valid": valid})
        for key, value in (
            ("tile_ix", ix), ("tile_iy", iy), ("year", year), ("cluster_id", first.cluster_id),
            ("cluster_ids", [t.cluster_id for t in covering]), ("geometry_hash", first.geometry_hash),
            ("valid_pixels", int(valid.sum())), ("label_pixels", int(labels.sum())),
        ):
            rows[key].append(value)
    report.polygons_without_tile = sorted(set(must_touch) - touched)
    attrs = {
        "bands": list(BANDS), "partition": partition, "year": year, "label_rule": LABEL_RULE, "tile_size": TILE,
        "nan_only": [list(t) for t in report.nan_only], "mines_without_tile": len(report.polygons_without_tile),
    }
    return TensorPack(FIELDS, spool, rows, attrs), report


def preview_tile(pack: TensorPack) -> tuple[np.ndarray, str] | None:
    """The RGB-with-outline picture of the tile with most mine pixels, and which tile it is."""
    if not len(pack.rows["tile_ix"]):
        return None
    best = int(np.argmax(pack.rows["label_pixels"]))
    record = pack.record(best)
    rgb = tile_rgb_with_outline(record["features"], record["labels"])
    return rgb, f"({pack.rows['tile_ix'][best]}, {pack.rows['tile_iy'][best]}) of cluster {pack.rows['cluster_id'][best][:8]}"


def tile_rgb_with_outline(features: np.ndarray, labels: np.ndarray, scale: int = 4) -> np.ndarray:
    """(3, H*scale, W*scale) RGB of one tile with the mine outline burnt in bright red, for quick looks."""
    rgb = features[[BANDS.index("red"), BANDS.index("green"), BANDS.index("blue")]].astype("float64")
    mask = labels[0].astype(bool)
    inner = mask.copy()
    inner[1:-1, 1:-1] = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    outline = mask & ~inner
    low = float(rgb.min())
    high = float(rgb.max()) + max(float(rgb.max()) - low, 1e-3)  # above anything the stretch keeps
    rgb[0][outline], rgb[1][outline], rgb[2][outline] = high, low, low
    return np.kron(rgb, np.ones((1, scale, scale)))
