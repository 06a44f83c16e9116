"""Every raster output opens in the tools users place it with, materialized through Dagster on
generated rasters: the tiles store and the square-grid store through xarray/odc-geo and GDAL's
Zarr driver, the square-grid COGs through ``gdalinfo`` (Debian's gdal-bin), the H3 results as
GeoParquet. GDAL's Zarr driver is used in process from the rasterio wheel (GDAL 3.10, which
reads the CF grid mapping) and through ``gdalinfo`` (gdal-bin 3.6, geotransform only)."""

import json
import shutil
import subprocess

import dagster as dg
import h3
import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.transform import from_origin
from upath import UPath

from gnt_assets.core.atomic import atomic_directory, pointer_path, resolve_directory
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions, grids, sources, tiling
from gnt_assets.rasters.assets import GRIDS, grid_assets, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.local import sample_rasters, write_geotiff
from gnt_assets.rasters.resources import RasterFolderResource
from gnt_assets.rasters.sensors import raster_folder_sensor

needs_gdal_bin = pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdal-bin is not installed (make test installs it)")
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-qgis lives in the system interpreter, not in our venv
QGIS_OPENS = """
import json, sys
from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
found = {}
for kind, source in json.loads(sys.argv[1]):
    layer = QgsRasterLayer(source, "raster", "gdal") if kind == "raster" else QgsVectorLayer(source, "vector", "ogr")
    extent = layer.extent()
    found[source] = {"valid": layer.isValid(), "crs": layer.crs().authid() or layer.crs().description(),
                     "extent": [extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum()],
                     "count": layer.featureCount() if kind == "vector" else layer.bandCount()}
print(json.dumps(found))
"""


def _has_qgis() -> bool:
    return shutil.which(SYSTEM_PYTHON) is not None and subprocess.run(
        [SYSTEM_PYTHON, "-c", "import qgis.core"], capture_output=True).returncode == 0


needs_qgis = pytest.mark.skipif(not _has_qgis(), reason="QGIS is not installed (Debian: apt-get install python3-qgis qgis-providers)")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """temperature (lon/lat float32) and landcover (UTM uint8) through tiles and both grids."""
    root = tmp_path_factory.mktemp("outputs") / "storage"
    root.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GNT_STORAGE_ROOT", str(root))
        resources = resources_for_profile("local")
        resources["raster_folder"] = RasterFolderResource(tile_size=100)
        storage = resources["storage"].root_path / "rasters"
        sample_rasters(storage / "incoming", size=150)
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(instance=instance, resources={k: resources[k] for k in ("storage", "raster_folder")})
            for request in raster_folder_sensor(context).dynamic_partitions_requests:
                instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
            every = [*definitions.defs.assets, *definitions.defs.asset_checks]
            dg.materialize(every, selection=[a.key for a in grid_assets], instance=instance, resources=resources)
            for key in ("temperature", "landcover"):
                run = dg.materialize(every, selection=[raster_source.key, raster_tiles.key, *(a.key for a in resampled_assets)],
                                     partition_key=key, instance=instance, resources=resources)
                for event in run.get_asset_materialization_events():  # every output is in the STAC catalog too
                    metadata = event.materialization.metadata
                    assert "stac_item" in metadata or event.asset_key == raster_source.key, metadata.get("stac_item_error")
        yield storage


def source_geobox(path) -> GeoBox:
    with rasterio.open(path) as src:
        return GeoBox((src.height, src.width), src.transform, src.crs)


def square_geobox(cells) -> GeoBox:
    """The square grid's pixel grid from the EASE-Grid 2.0 constants and the cells' indices."""
    size = next(g.resolution_m for g in GRIDS if g.name == "square_5km")
    return GeoBox((int(cells.j.max() - cells.j.min()) + 1, int(cells.i.max() - cells.i.min()) + 1),
                  Affine(size, 0, grids.EASE_XMIN + cells.i.min() * size, 0, -size, grids.EASE_YMAX - cells.j.min() * size), grids.SQUARE_CRS)


@pytest.mark.parametrize("key", ["temperature", "landcover"])
def test_tiles_store_is_the_source_on_its_geobox(outputs, key):
    source = outputs / "incoming" / f"{key}.tif"
    store = resolve_directory(outputs / "tiles" / key / "tiles.zarr")
    dataset = xr.open_zarr(store.path, consolidated=False, mask_and_scale=False)
    assert dataset.odc.geobox == source_geobox(source.path)
    with rasterio.open(source.path) as src:
        np.testing.assert_array_equal(dataset.band_data.values, src.read())
        nodata, crs, transform = src.nodata, src.crs, src.transform
    with rasterio.open(f'ZARR:"{store.path}":/band_data') as zarr_in_gdal:  # GDAL 3.10, the rasterio wheel's
        assert (zarr_in_gdal.crs, zarr_in_gdal.nodata) == (crs, nodata)
        assert zarr_in_gdal.transform.almost_equals(transform, precision=1e-12)  # GDAL derives it from the coordinates
        assert zarr_in_gdal.block_shapes[0] == (100, 100)  # one block per tile


@needs_gdal_bin
def test_gdalinfo_reads_the_tiles_geotransform(outputs):
    store = resolve_directory(outputs / "tiles" / "landcover" / "tiles.zarr")
    info = json.loads(subprocess.run(["gdalinfo", "-json", f'ZARR:"{store.path}":/band_data:0'], check=True, capture_output=True, text=True).stdout)
    with rasterio.open((outputs / "incoming" / "landcover.tif").path) as src:
        assert info["size"] == [src.width, src.height]
        np.testing.assert_allclose(info["geoTransform"], src.transform.to_gdal(), rtol=1e-12)
        assert info["bands"][0]["noDataValue"] == src.nodata


def test_square_grid_store_is_on_the_ease_grid(outputs):
    cells = read_table(outputs / "grids" / "square_5km.parquet")
    store = resolve_directory(outputs / "resampled" / "square_5km" / "temperature.zarr")
    dataset = xr.open_zarr(store.path, consolidated=False)
    assert dataset.odc.geobox == square_geobox(cells)
    table = read_table(outputs / "resampled" / "square_5km" / "temperature.parquet")
    mean = table[table.method == "mean"].merge(cells[["cell_id", "i", "j"]], on="cell_id")
    grid = dataset.mean_b1.values
    np.testing.assert_array_equal(grid[mean.j - cells.j.min(), mean.i - cells.i.min()], mean["value"])
    with rasterio.open(f'ZARR:"{store.path}":/mean_b1') as zarr_in_gdal:
        assert zarr_in_gdal.crs == rasterio.crs.CRS.from_epsg(6933)
        assert zarr_in_gdal.transform.almost_equals(square_geobox(cells).affine, precision=1e-6)


@needs_gdal_bin
def test_gdalinfo_places_the_square_grid_cogs(outputs):
    cells = read_table(outputs / "grids" / "square_5km.parquet")
    folder = outputs / "resampled" / "square_5km" / "cog" / "temperature"
    assert sorted(p.name for p in folder.iterdir()) == ["bilinear_b1.tif", "mean_b1.tif"]
    info = json.loads(subprocess.run(["gdalinfo", "-json", (folder / "mean_b1.tif").path], check=True, capture_output=True, text=True).stdout)
    assert "EASE-Grid 2.0" in info["coordinateSystem"]["wkt"]
    assert info["geoTransform"] == list(square_geobox(cells).affine.to_gdal())
    assert info["metadata"]["IMAGE_STRUCTURE"]["LAYOUT"] == "COG"
    assert [b["description"] for b in info["bands"]] == ["band 1 mean per cell", "valid fraction"]
    zarr_values = xr.open_zarr(resolve_directory(outputs / "resampled" / "square_5km" / "temperature.zarr").path, consolidated=False).mean_b1.values
    with rasterio.open((folder / "mean_b1.tif").path) as cog:
        np.testing.assert_array_equal(cog.read(1), zarr_values)


def test_h3_results_are_geoparquet_with_index_and_cell_polygons(outputs):
    path = outputs / "resampled" / "h3_5km" / "landcover.parquet"
    geo = json.loads(pq.read_schema(path.path).metadata[b"geo"])
    assert geo["primary_column"] == "geometry" and geo["columns"]["geometry"]["encoding"] == "WKB"
    assert set(geo["columns"]["geometry"]["geometry_types"]) <= {"Polygon", "MultiPolygon"}
    table = read_table(path)
    assert table.crs.to_epsg() == 4326 and all(h3.is_valid_cell(c) for c in table.cell_id)
    first = table.drop_duplicates("cell_id").head(20)
    hexagons = [shapely.Polygon([(lon, lat) for lat, lon in h3.cell_to_boundary(c)]) for c in first.cell_id]
    assert all(shapely.equals_exact(a, b, tolerance=1e-9) for a, b in zip(first.geometry, hexagons, strict=True))
    formats = subprocess.run(["ogrinfo", "--formats"], capture_output=True, text=True).stdout if shutil.which("ogrinfo") else ""
    if formats:  # the GeoPackage beside it: one feature per cell, a column per method and band
        layer = subprocess.run(["ogrinfo", "-so", path.with_suffix(".gpkg").path, "cells"], check=True, capture_output=True, text=True).stdout
        assert f"Feature Count: {table.cell_id.nunique()}" in layer and "majority_b1: Real" in layer and "cell_id: String" in layer
    if "Parquet" in formats:  # GDAL built with Arrow (Debian 12's gdal-bin is not)
        summary = subprocess.run(["ogrinfo", "-so", "-al", path.path], check=True, capture_output=True, text=True).stdout
        assert "Geometry: " in summary and "cell_id: String" in summary


def test_tiles_store_on_s3_is_published_whole_and_read_from_its_version(s3_root, s3_endpoint, tmp_path):
    data = np.arange(2 * 90 * 70, dtype="int16").reshape(2, 90, 70)
    write_geotiff(UPath(tmp_path / "two_bands.tif"), data, crs="EPSG:32632", transform=from_origin(575000, 5100000, 30, 30), nodata=-1)
    info = sources.inspect(sources.SourceEntry(key="two_bands", path=str(tmp_path / "two_bands.tif"), name="two_bands"))
    path, options = s3_root / "tiles" / "two_bands" / "tiles.zarr", s3_endpoint.storage_options()
    with atomic_directory(path) as staged:
        rows = [tiling.write_tile(task) for task in tiling.tile_tasks(info, staged, options, 64)]
    store = resolve_directory(path)
    assert store != path and pointer_path(path).exists()
    dataset = xr.open_zarr(str(store), consolidated=False, storage_options=options, mask_and_scale=False)
    assert dataset.odc.geobox == source_geobox(tmp_path / "two_bands.tif")
    np.testing.assert_array_equal(dataset.band_data.values, data)
    last = rows[-1]  # band 2, the bottom-right partial tile: one chunk
    tile = tiling.read_tile(str(store), last["chunk_key"], options)[: last["height"], : last["width"]]
    np.testing.assert_array_equal(tile, data[1, 64:, 64:])


@needs_qgis
def test_qgis_opens_every_raster_output(outputs):
    """QGIS itself (Debian's 3.22, headless): the square-grid COGs and stores, the tiles store and the H3 results
    load as valid layers, placed where GDAL places them. Debian's GDAL has no Parquet driver, so there the H3
    GeoParquet is checked only where the driver exists (QGIS builds with GDAL >= 3.5 and Arrow open it); the
    GeoPackage beside it opens everywhere."""
    cells = read_table(outputs / "grids" / "square_5km.parquet")
    cog = outputs / "resampled" / "square_5km" / "cog" / "temperature" / "mean_b1.tif"
    tiles = resolve_directory(outputs / "tiles" / "landcover" / "tiles.zarr")
    h3_results = outputs / "resampled" / "h3_5km" / "landcover.parquet"
    gpkg = h3_results.with_suffix(".gpkg")
    layers = [("raster", cog.path), ("raster", f'ZARR:"{tiles.path}":/band_data:0'), ("vector", h3_results.path), ("vector", gpkg.path)]
    run = subprocess.run([SYSTEM_PYTHON, "-c", QGIS_OPENS, json.dumps(layers)], capture_output=True, text=True, timeout=300,
                         env={"QT_QPA_PLATFORM": "offscreen", "HOME": str(outputs), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    found = json.loads(run.stdout.strip().splitlines()[-1])
    square = found[cog.path]
    assert square["valid"] and square["count"] == 2 and square["crs"] == "EPSG:6933"  # EASE-Grid 2.0, recognised
    np.testing.assert_allclose(square["extent"], square_geobox(cells).extent.boundingbox, rtol=1e-9)
    landcover = found[f'ZARR:"{tiles.path}":/band_data:0']
    with rasterio.open((outputs / "incoming" / "landcover.tif").path) as src:
        assert landcover["valid"] and landcover["count"] == 1
        np.testing.assert_allclose(landcover["extent"], list(src.bounds), rtol=1e-9)
    table = read_table(h3_results)
    layer = found[gpkg.path]  # one feature per cell, in every QGIS build
    assert layer["valid"] and layer["crs"] == "EPSG:4326" and layer["count"] == table.cell_id.nunique()
    np.testing.assert_allclose(layer["extent"], table.total_bounds, rtol=1e-9)
    formats = subprocess.run(["ogrinfo", "--formats"], capture_output=True, text=True).stdout if shutil.which("ogrinfo") else ""
    if "Parquet" in formats:
        hexagons = found[h3_results.path]
        assert hexagons["valid"] and hexagons["crs"] == "EPSG:4326" and hexagons["count"] == len(read_table(h3_results))
