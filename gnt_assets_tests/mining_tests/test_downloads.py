"""Export files are verified against the world grid before anything is written or deleted."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox

from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.downloads import ExportFileError, assemble
from gnt_assets.mining.exports import export_spec
from gnt_assets.mining.local.samples import geotiff_bytes


@pytest.fixture
def spec():
    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": ["ZAF"]}, geometry=[shapely.box(27.0, -26.2, 27.02, -26.19)], crs=4326)
    return export_spec(next(cluster_country(mines, "ZAF", 0.005).itertuples()), 2020)


def test_shards_assemble_into_the_region(spec):
    pixels = np.random.default_rng(1).uniform(0, 1, (7, spec.height, spec.width)).astype("float32")
    half = spec.width // 2
    files = {"a-0000000000-0000000000.tif": geotiff_bytes(pixels[:, :, :half], spec.geobox[:, :half]),
             f"a-0000000000-{half:010d}.tif": geotiff_bytes(pixels[:, :, half:], spec.geobox[:, half:])}
    np.testing.assert_array_equal(assemble(spec, files), pixels)


def test_bad_files_name_the_file_and_problem(spec):
    pixels = np.ones((7, spec.height, spec.width), "float32")
    shifted = GeoBox(spec.geobox.shape, spec.geobox.affine @ Affine.translation(0.5, 0), spec.geobox.crs)
    with pytest.raises(ExportFileError, match=r"off\.tif: origin .* is off the world grid"):
        assemble(spec, {"off.tif": geotiff_bytes(pixels, shifted)})
    good = geotiff_bytes(pixels, spec.geobox)
    with pytest.raises(ExportFileError, match=r"cut.tif: not a readable GeoTIFF"):
        assemble(spec, {"cut.tif": good[: len(good) // 3]})
    with pytest.raises(ExportFileError, match="no export files"):
        assemble(spec, {})
