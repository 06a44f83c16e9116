"""Where rasters come from: the watched folder and registry file, and the tile size.

Local and cloud differ only in where the folder lives (under the storage root by default,
any fsspec URL via GNT_RASTER_FOLDER), so one resource class serves both profiles.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field
from upath import UPath


class RasterFolderResource(dg.ConfigurableResource):
    """The watched folder (rasters + YAML/JSON sidecars) and the registry file of a deployment."""

    folder: str = Field(default="rasters/incoming", description="Watched folder; relative paths are under the storage root.")
    registry: str = Field(default="rasters/registry.yaml", description="Registry file listing extra rasters.")
    tile_size: int = Field(default=1000, description="Tile side in pixels.")
    memory_limit_mb: float = Field(default=1536, description="Memory one resampling task may use for raster blocks and weights (GNT_RASTER_MEMORY_LIMIT_MB).")

    def _resolve(self, root: UPath, value: str) -> UPath:
        return UPath(value) if "://" in value or value.startswith("/") else root / value

    def folder_path(self, root: UPath) -> UPath:
        return self._resolve(root, self.folder)

    def registry_path(self, root: UPath) -> UPath:
        return self._resolve(root, self.registry)
