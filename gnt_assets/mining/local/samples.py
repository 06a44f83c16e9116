"""Deterministic stand-ins for the mining pipeline's outside world: the polygon file and Landsat composites.

The polygon sample mimics Maus et al. (columns ``ISO3_CODE``, ``COUNTRY_NAME``,
``AREA`` in km2, EPSG:4326): mine districts in five countries, ZAF and BWA
districts overlapping across their border, one Fiji mine split at the
antimeridian, and a handful of rows the validation must reject or repair.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import geopandas as gpd
import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from rasterio.features import rasterize
from upath import UPath

from gnt_assets.core.atomic import atomic_open

# (ISO3, name, district centres (lon, lat), mines per district)
COUNTRIES = (
    ("ZAF", "South Africa", [(27.05, -26.20), (29.45, -25.80), (25.30, -24.65), (30.10, -27.60)], 80),
    ("BWA", "Botswana", [(25.36, -24.62), (27.47, -21.97)], 10),
    ("NAM", "Namibia", [(15.90, -22.95), (17.05, -19.25)], 10),
    ("CHL", "Chile", [(-68.90, -24.27), (-70.40, -27.35), (-69.10, -22.30)], 60),
    ("FJI", "Fiji", [(178.10, -17.55)], 6),
)
SAMPLE_NAME = "mining/sample/mining_polygons.gpkg"


def _mine(rng: np.random.Generator, lon: float, lat: float) -> shapely.Polygon:
    """A small irregular polygon (a few hundred metres) around a point."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, 7))
    radius = rng.uniform(0.001, 0.004) * rng.uniform(0.6, 1.0, 7)
    return shapely.Polygon(np.c_[lon + radius * np.cos(angles), lat + radius * np.sin(angles)])


def sample_polygons(seed: int = 984) -> gpd.GeoDataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for iso3, name, districts, count in COUNTRIES:
        for lon, lat in districts:
            for _ in range(count // len(districts) + 5):
                rows.append((iso3, name, _mine(rng, lon + rng.normal(0, 0.004), lat + rng.normal(0, 0.004))))
    west = shapely.box(179.996, -16.806, 180.0, -16.800)
    east = shapely.box(-180.0, -16.806, -179.997, -16.800)
    rows.append(("FJI", "Fiji", shapely.MultiPolygon([west, east])))  # split at the antimeridian
    rows.append(("ZAF", "South Africa", shapely.Polygon([(27.0, -26.0), (27.01, -26.01), (27.01, -26.0), (27.0, -26.01)])))  # bow tie
    rows.append(("ZAF", "South Africa", shapely.Polygon()))  # empty
    rows.append(("ZAF", "South Africa", None))  # missing
    rows.append(("XXA", "Atlantis", _mine(rng, -30.0, 0.0)))  # unknown code
    rows.append(("NAM", "Namibia", shapely.Point(16.0, -22.0)))  # not a polygon
    frame = gpd.GeoDataFrame(
        {"ISO3_CODE": [r[0] for r in rows], "COUNTRY_NAME": [r[1] for r in rows]},
        geometry=[r[2] for r in rows],
        crs="EPSG:4326",
    )
    frame["AREA"] = [0.0 if g is None or g.is_empty else round(g.area * 111.32**2, 4) for g in frame.geometry]
    return frame[["ISO3_CODE", "COUNTRY_NAME", "AREA", "geometry"]]


def ensure_sample_polygons(root: UPath) -> UPath:
    """The sample GeoPackage under the storage root, written on first use."""
    path = root / SAMPLE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            local = f"{tmp}/mining_polygons.gpkg"
            sample_polygons().to_file(local, driver="GPKG")
            data = Path(local).read_bytes()
        with atomic_open(path, "wb") as out:
            out.write(data)
    return path


def _world_pixels(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    col0, row0 = (round(v) for v in ~_world_affine() @ (geobox.affine.c, geobox.affine.f))
    return np.mgrid[row0 : row0 + geobox.shape.y, col0 : col0 + geobox.shape.x]


def scene_gaps(geobox: GeoBox, year: int) -> np.ndarray:
    """Pixels no scene covers (masked in the composite), keyed by world position and year: thin diagonal
    stripes like Landsat 7's SLC-off gaps, so every export has masked pixels inside its clip."""
    rows, cols = _world_pixels(geobox)
    return (cols + 2 * rows + 13 * year) % 53 < 2


def _noise(geobox: GeoBox, year: int, band: int) -> np.ndarray:
    """Smooth, deterministic texture keyed by world pixel position, year and band."""
    rows, cols = (v.astype("float64") for v in _world_pixels(geobox))
    phase = int(hashlib.sha256(f"{year}-{band}".encode()).hexdigest()[:6], 16) / 2**24 * 2 * np.pi
    return 0.5 + 0.25 * np.sin(cols / 23.0 + phase) * np.cos(rows / 31.0 - phase) + 0.1 * np.sin((cols + rows) / 7.0)


def _world_affine():
    from gnt_assets.core.worldgrid import WORLD

    return WORLD.affine


BASE = np.array([0.05, 0.08, 0.10, 0.25, 0.28, 0.20, 300.0])
MINE = np.array([0.12, 0.15, 0.20, 0.22, 0.35, 0.32, 312.0])


def render_composite(geobox: GeoBox, clip: shapely.Geometry, mines: list[shapely.Geometry], year: int) -> np.ndarray:
    """Landsat-like annual composite (7, H, W) float32: bright, warm mines; NaN (masked) outside the clip and
    in the scene gaps. Earth Engine's masked pixels: what a GeoTIFF holds there depends on the request."""
    inside = rasterize([clip], out_shape=geobox.shape, transform=geobox.affine, fill=0, default_value=1).astype(bool)
    inside &= ~scene_gaps(geobox, year)
    mine = rasterize(mines, out_shape=geobox.shape, transform=geobox.affine, fill=0, default_value=1).astype(bool) if mines else np.zeros(geobox.shape, bool)
    out = np.empty((7, *geobox.shape), dtype="float32")
    for band in range(7):
        texture = _noise(geobox, year, band)
        scale = 8.0 if band == 6 else 0.04
        value = np.where(mine, MINE[band], BASE[band]) + scale * (texture - 0.5) + (year - 2000) * (0.0005 if band < 6 else 0.02)
        out[band] = np.where(inside, value, np.nan)
    return out


def geotiff_bytes(pixels: np.ndarray, geobox: GeoBox, nodata: float | None = float("nan")) -> bytes:
    """A 7-band float32 GeoTIFF on the geobox, band descriptions = band names, tagged with ``nodata`` (None: no tag)."""
    from rasterio.io import MemoryFile

    from gnt_assets.mining.regions import BANDS

    profile = {
        "driver": "GTiff", "width": geobox.shape.x, "height": geobox.shape.y, "count": len(BANDS), "dtype": "float32",
        "crs": "EPSG:4326", "transform": geobox.affine, "compress": "deflate",
    }
    if nodata is not None:
        profile["nodata"] = nodata
    with MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(pixels.astype("float32"))
            dataset.descriptions = BANDS
        return memory.read()
