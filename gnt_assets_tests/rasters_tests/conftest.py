"""Fixtures of the rasters tests: the local profile's resources with 100 px tiles (small rasters still make several)."""

import pytest

from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters.resources import RasterFolderResource


@pytest.fixture
def resources(storage_root):
    built = resources_for_profile("local")
    built["raster_folder"] = RasterFolderResource(tile_size=100)
    return built
