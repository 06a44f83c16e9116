"""Sample rasters for the rasters pipeline: a continuous, a categorical and a count raster
with sidecars, generated deterministically in the watched folder on first use."""

from __future__ import annotations

import io

import numpy as np
import rasterio
import yaml
from rasterio.transform import from_origin
from upath import UPath

from gnt_assets.core.atomic import atomic_write_bytes, atomic_write_text


def write_geotiff(path: UPath, data: np.ndarray, *, crs: str | None, transform, nodata) -> None:
    data = data if data.ndim == 3 else data[None]
    buffer = io.BytesIO()
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", height=data.shape[1], width=data.shape[2], count=data.shape[0], dtype=data.dtype,
                         crs=crs, transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256, compress="deflate") as dst:
            dst.write(data)
        buffer.write(memory.read())
    atomic_write_bytes(path, buffer.getvalue())


def sample_rasters(folder: UPath, size: int = 240) -> list[UPath]:
    """temperature (float32, lon/lat), landcover (uint8 classes, UTM 32N), species_count (int32, lon/lat)."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:size, 0:size] / size
    temperature = (12 + 6 * np.sin(3 * xx) * np.cos(2 * yy) + rng.normal(0, 0.3, (size, size))).astype("float32")
    temperature[size // 3 : size // 3 + 20, size // 2 : size // 2 + 30] = -9999  # a nodata hole
    landcover = (1 + (np.floor(4 * xx) + np.floor(3 * yy)) % 5 + (rng.random((size, size)) < 0.05)).astype("uint8")
    landcover[:10, :] = 255
    counts = rng.poisson(5 + 20 * xx * yy).astype("int32")
    specs = [
        ("temperature", temperature, "EPSG:4326", from_origin(9.9, 46.1, 1.2 / size, 1.2 / size), -9999.0,
         {"kind": "continuous", "dataset": "GNT sample", "variable": "air_temperature", "units": "degC", "description": "Mean annual air temperature", "temporal": {"start": "2000", "end": "2020"}}),
        ("landcover", landcover, "EPSG:32632", from_origin(575000, 5100000, 400, 400), 255,
         {"kind": "categorical", "dataset": "GNT sample", "variable": "land_cover_class", "units": "class", "description": "Land cover classes 1-6"}),
        ("species_count", counts, "EPSG:4326", from_origin(9.9, 46.1, 1.2 / size, 1.2 / size), -1,
         {"kind": "count", "dataset": "GNT sample", "variable": "plant_richness", "units": "species_count", "description": "Plant species richness"}),
    ]
    paths = []
    for name, data, crs, transform, nodata, meta in specs:
        path = folder / f"{name}.tif"
        if not path.exists():
            atomic_write_text(folder / f"{name}.yaml", yaml.safe_dump(meta))
            write_geotiff(path, data, crs=crs, transform=transform, nodata=nodata)
        paths.append(path)
    return paths
