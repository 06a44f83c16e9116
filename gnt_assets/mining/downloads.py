"""Exported GeoTIFFs checked against the world grid and assembled into a cluster's pixels.

A file is accepted only if it opens as a raster with seven float bands in
EPSG:4326, the world grid's pixel size, and an origin on a world-grid pixel edge
inside the cluster's region; anything else raises naming the file and the problem.
Pixels equal to the export's declared nodata (``spec.nodata``) become NaN; a file
whose nodata tag declares another value is refused (it was not exported as asked).
"""

from __future__ import annotations

import numpy as np
from rasterio.io import MemoryFile

from gnt_assets.core.errors import InputError
from gnt_assets.core.worldgrid import RESOLUTION
from gnt_assets.mining.exports import ExportSpec
from gnt_assets.mining.regions import BANDS


class ExportFileError(InputError):
    """An export file that is truncated, unreadable, or not on the expected grid."""


def place(spec: ExportSpec, name: str, data: bytes) -> tuple[int, int, np.ndarray]:
    """The file's (row, col) offset in the cluster region and its pixels (7, h, w)."""
    try:
        with MemoryFile(data) as memory, memory.open() as raster:
            if raster.count != len(BANDS):
                raise ExportFileError(f"{name}: {raster.count} bands, expected {len(BANDS)} ({', '.join(BANDS)})")
            if raster.crs is None or raster.crs.to_epsg() != 4326:
                raise ExportFileError(f"{name}: CRS {raster.crs}, expected EPSG:4326")
            a = raster.transform
            if abs(a.a - RESOLUTION) > 1e-12 or abs(a.e + RESOLUTION) > 1e-12 or a.b or a.d:
                raise ExportFileError(f"{name}: pixel size ({a.a}, {a.e}) is not the world grid's {RESOLUTION}")
            col = (a.c - spec.crs_transform[2]) / RESOLUTION
            row = (spec.crs_transform[5] - a.f) / RESOLUTION
            if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
                raise ExportFileError(f"{name}: origin ({a.c}, {a.f}) is off the world grid by ({col % 1:.4f}, {row % 1:.4f}) px")
            row, col = round(row), round(col)
            if row < 0 or col < 0 or row + raster.height > spec.height or col + raster.width > spec.width:
                raise ExportFileError(f"{name}: {raster.width} x {raster.height} px at ({col}, {row}) lies outside the region")
            tagged = raster.nodata
            if tagged is not None and not np.isnan(tagged) and tagged != spec.nodata:
                raise ExportFileError(f"{name}: nodata {tagged}, the export declared {spec.nodata}")
            pixels = raster.read().astype("float32")
            pixels[pixels == np.float32(spec.nodata)] = np.nan
    except ExportFileError:
        raise
    except Exception as error:  # rasterio raises several types for truncated or corrupt files
        raise ExportFileError(f"{name}: not a readable GeoTIFF (truncated download?): {error}") from error
    return row, col, pixels


def assemble(spec: ExportSpec, files: dict[str, bytes]) -> np.ndarray:
    """All shards of one export placed into the cluster region (7, H, W); NaN where no file has data."""
    if not files:
        raise ExportFileError(f"{spec.description}: no export files")
    out = np.full((len(BANDS), spec.height, spec.width), np.nan, dtype="float32")
    for name, data in sorted(files.items()):
        row, col, pixels = place(spec, name, data)
        window = out[:, row : row + pixels.shape[1], col : col + pixels.shape[2]]
        np.copyto(window, pixels, where=~np.isnan(pixels))
    return out
