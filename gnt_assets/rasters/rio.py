"""Opening rasters by path or URL, so GDAL reads only the blocks a window needs.

``rasterio.open(fileobj)`` copies the whole file into a MemoryFile (rasterio 1.4); a local
path is handed to GDAL as is, any other fsspec URL through ``opener=`` (GDAL's virtual file
system calls the filesystem for the byte ranges it needs)."""

from __future__ import annotations

import rasterio
from upath import UPath

from gnt_assets.core.atomic import is_local


def open_raster(path: str | UPath):
    """The raster at ``path`` (local path or fsspec URL), opened for reading by GDAL's own I/O."""
    upath = UPath(path)
    if is_local(upath):
        return rasterio.open(upath.path)
    return rasterio.open(str(upath), opener=upath.fs)
