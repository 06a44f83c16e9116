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


def test_declared_nodata_becomes_nan_and_a_file_declaring_another_is_refused(spec):
    pixels = np.full((7, spec.height, spec.width), 0.25, "float32")
    pixels[:, 3, 5] = spec.nodata  # masked, as Earth Engine writes it when told to unmask to the sentinel
    pixels[2, 4, 6] = 0.0  # a real zero reflectance stays a value
    out = assemble(spec, {"a.tif": geotiff_bytes(pixels, spec.geobox, spec.nodata)})
    assert np.isnan(out[:, 3, 5]).all() and out[2, 4, 6] == 0.0 and np.isfinite(out).sum() == out.size - 7
    untagged = assemble(spec, {"a.tif": geotiff_bytes(pixels, spec.geobox, None)})  # computePixels: no tag
    np.testing.assert_array_equal(untagged, out)
    with pytest.raises(ExportFileError, match=r"b.tif: nodata 0.0, the export declared -9999.0"):
        assemble(spec, {"b.tif": geotiff_bytes(pixels, spec.geobox, 0.0)})


def test_clip_is_the_union_of_the_cluster_whole_world_tiles(spec):
    from gnt_assets.core.worldgrid import world_tile

    clip = shapely.from_wkt(spec.clip_wkt)
    bounds = spec.geobox.extent.boundingbox
    assert clip.geom_type == "Polygon" and clip.symmetric_difference(shapely.box(*bounds)).area < 1e-12  # edge tiles whole
    tile = world_tile(*next(iter(_cluster_tiles(spec))))
    assert clip.contains(shapely.box(*tile.extent.boundingbox).buffer(-1e-7))
    assert len(clip.exterior.coords) == 5  # a rectangle of tiles: no vertex left along its straight edges


def _cluster_tiles(spec):
    from gnt_assets.core.worldgrid import tiles_covering

    return tiles_covering(spec.geobox.extent.boundingbox)
