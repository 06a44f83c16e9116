"""The map viewer in headless Chromium: one output of each mapped family on the map, tiles drawn, no request failed."""

from __future__ import annotations

import io
import os
import shutil
import socket
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import geopandas as gpd
import httpx
import numpy as np
import pytest
import rasterio
import shapely
import uvicorn
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros
from PIL import Image
from rasterio.transform import from_origin
from upath import UPath

from gnt_assets.core.stac_catalog import catalog_output, viewer_url
from gnt_assets.materialization import catalog_metadata
from gnt_assets.viewer.app import create_app
from gnt_assets_tests.viewer_tests.browser import Browser

NODE_DIR = Path(__file__).resolve().parents[2] / ".gnt" / "node"
BACKGROUND = (0xDF, 0xE4, 0xEA)  # the page's map background (viewer.js)
WORLD_RES = 0.000269495  # the mining world grid

needs_browser = pytest.mark.skipif(not (shutil.which("chromium") or Path("/usr/bin/chromium").exists()),
                                   reason="chromium is not installed (make test installs it)")
needs_maplibre = pytest.mark.skipif(not (NODE_DIR / "node_modules" / "maplibre-gl" / "dist" / "maplibre-gl.js").exists(),
                                    reason="maplibre-gl is not in .gnt/node (make node-tools installs it)")


def day(text: str) -> tuple[datetime, datetime]:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return moment, moment


def write_conus_day(root: Path) -> None:
    geobox = GeoBox.from_bbox((-2_000_000, -1_000_000, 2_000_000, 1_500_000), "EPSG:5070", shape=(40, 64))
    days = np.array(["2020-07-01", "2020-07-02"], dtype="datetime64[ns]")
    t2 = xr_zeros(geobox, dtype="float32").expand_dims(time=days).copy()
    t2.values[:] = 270 + np.add.outer(np.arange(40), np.arange(64))[None] / 4
    dataset = t2.to_dataset(name="T2")
    dataset["T2"].attrs["units"] = "K"
    dataset.to_zarr(root / "conus404" / "daily.zarr", mode="w", consolidated=False)
    catalog_output(UPath(root), "conus404_daily", "2020-07-01", {"zarr": root / "conus404" / "daily.zarr"}, times=day("2020-07-01"))


def write_sentinel_cube(root: Path) -> None:
    geobox = GeoBox.from_bbox((-123.14, 49.27, -123.12, 49.28), "EPSG:4326", shape=(24, 48))
    band = xr_zeros(geobox, dtype="float32").expand_dims(time=np.array(["2024-06-01"], dtype="datetime64[ns]"), band=["red", "green", "blue", "nir"])
    rows, cols = np.mgrid[0:24, 0:48]
    fields = np.stack([0.02 + 0.28 * cols / 47, 0.02 + 0.28 * rows / 23, np.full((24, 48), 0.1), np.full((24, 48), 0.3)], axis=-1)
    cube = band.transpose("time", "latitude", "longitude", "band").copy(data=fields[None].astype("float32"))  # red grows eastwards
    cube.to_dataset(name="reflectance_median").to_zarr(root / "sentinel" / "cube.zarr", mode="w", consolidated=False)
    catalog_output(UPath(root), "sentinel_mosaic", "square_1_2|2024-06-01", {"cube": root / "sentinel" / "cube.zarr"},
                   times=(datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 30, 23, 59, 59, tzinfo=UTC)))


def write_mining_region(root: Path) -> None:
    """A region of 1024 x 1024 world-grid pixels, written only in its north-west 128 x 128 (empty chunks are not stored)."""
    left, top = 25.0, -22.0
    geobox = GeoBox.from_bbox((left, top - 1024 * WORLD_RES, left + 1024 * WORLD_RES, top), "EPSG:4326", resolution=WORLD_RES)
    bands = ["blue", "green", "red", "nir", "swir1", "swir2", "thermal"]
    region = xr_zeros(geobox, dtype="float32").expand_dims(band=bands).copy()
    region.values[:] = np.nan
    rows, cols = np.mgrid[0:128, 0:128]
    region.values[:, :128, :128] = (0.05 + 0.2 * np.sin(rows / 20.0) ** 2 * np.cos(cols / 30.0) ** 2)[None] * np.linspace(0.6, 1.4, 7)[:, None, None]
    region.values[:, 60:64, :128] = np.nan  # a nodata strip, as in the Landsat exports
    store = root / "mining" / "regions" / "BWA" / "2020.zarr"
    region.to_dataset(name="reflectance").to_zarr(store, mode="w", consolidated=False, encoding={"reflectance": {"chunks": (7, 64, 64)}})
    mines = gpd.GeoDataFrame({"mine_id": ["m1", "m2"]}, crs=4326,
                             geometry=[shapely.box(left + 10 * WORLD_RES, top - 50 * WORLD_RES, left + 50 * WORLD_RES, top - 10 * WORLD_RES),
                                       shapely.box(left + 70 * WORLD_RES, top - 120 * WORLD_RES, left + 110 * WORLD_RES, top - 80 * WORLD_RES)])
    (root / "tables").mkdir(parents=True, exist_ok=True)
    mines.to_parquet(root / "tables" / "mine_polygons.parquet")
    catalog_output(UPath(root), "landsat_regions", "BWA|2020", {"zarr": store, "mines": root / "tables" / "mine_polygons.parquet"},
                   hints={"zarr": {"band_names": bands}, "mines": {"role": "metadata"}},
                   times=(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 12, 31, 23, 59, 59, tzinfo=UTC)))


def write_mapterhorn(root: Path) -> None:
    cog = root / "mapterhorn" / "files" / "alps" / "tile_a.tif"
    cog.parent.mkdir(parents=True)
    rows, cols = np.mgrid[0:128, 0:128]
    dem = (800 + 3 * rows + 40 * np.sin(cols / 9.0) * np.cos(rows / 13.0)).astype("float32")
    with rasterio.open(cog, "w", driver="COG", width=128, height=128, count=1, dtype="float32", crs="EPSG:2056",
                       transform=from_origin(2_600_000, 1_200_256, 2, 2), nodata=-9999) as dataset:
        dataset.write(dem[None])
    catalog_output(UPath(root), "mapterhorn_cog", "alps.tile_a", {"tile_a": cog}, hints={"tile_a": {"unit": "m"}})
    coverage = root / "mapterhorn" / "merged" / "alps" / "coverage.gpkg"
    coverage.parent.mkdir(parents=True)
    gpd.GeoDataFrame(geometry=[shapely.box(2_600_000, 1_200_000, 2_600_256, 1_200_256)], crs=2056).to_crs(3857).to_file(coverage)
    catalog_output(UPath(root), "mapterhorn_source_coverage", "alps", {"coverage": coverage})


def write_grid(root: Path) -> None:
    cells = [shapely.box(4_300_000 + 5000 * i, 2_800_000 + 5000 * j, 4_305_000 + 5000 * i, 2_805_000 + 5000 * j) for j in range(6) for i in range(8)]
    values = np.arange(len(cells), dtype="float64")
    values[5] = np.nan  # a cell without a value: transparent
    table = gpd.GeoDataFrame({"cell_id": [f"c{k}" for k in range(len(cells))], "band": 1, "method": "mean", "value": values,
                              "valid_fraction": 1.0}, geometry=cells, crs=3035)
    path = root / "rasters" / "resampled" / "square_5km" / "temperature.parquet"
    path.parent.mkdir(parents=True)
    table.to_parquet(path)
    catalog_output(UPath(root), "resampled_square_5km", "temperature", {"table": path})


def write_raster_tiles(root: Path) -> None:
    """A tile array (no georeferencing of its own) and its tile index: two tiles side by side with their means."""
    import zarr

    folder = root / "rasters" / "tiles" / "dem"
    folder.mkdir(parents=True)
    zarr.create_array(folder / "tiles.zarr", shape=(1, 100, 200), chunks=(1, 100, 100), dtype="float32")[:] = 1.0
    index = gpd.GeoDataFrame({"tile_id": ["b1_r0000_c0000", "b1_r0000_c0001"], "band": 1, "mean": [10.0, 20.0]}, crs=4326,
                             geometry=[shapely.box(10.0, 45.0, 10.1, 45.1), shapely.box(10.1, 45.0, 10.2, 45.1)])
    index.to_parquet(folder / "index.parquet")
    catalog_output(UPath(root), "raster_tiles", "dem", {"tiles": folder / "tiles.zarr", "index": folder / "index.parquet"})


# (collection, item) shown in the browser, one per mapped family
SHOWN = [
    ("conus404-daily", "conus404_daily__2020-07-01"),
    ("sentinel-cubes", "sentinel_mosaic__square_1_2-2024-06-01"),
    ("mining-regions", "landsat_regions__BWA-2020"),
    ("mapterhorn-cogs", "mapterhorn_cog__alps.tile_a"),
    ("raster-grids", "resampled_square_5km__temperature"),
    ("raster-tiles", "raster_tiles__dem"),
]


@pytest.fixture(scope="module")
def storage_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("viewer") / "storage"
    for write in (write_conus_day, write_sentinel_cube, write_mining_region, write_mapterhorn, write_grid, write_raster_tiles):
        write(root)
    return root


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def viewer(storage_root) -> str:
    """The viewer app on a free loopback port (uvicorn in a thread), its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage_root, NODE_DIR), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the viewer did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@needs_maplibre
def test_the_api_lists_every_collection_and_refuses_paths_outside_the_storage_root(viewer):
    listing = httpx.get(f"{viewer}/api/collections").json()
    assert {(c["id"], i["id"]) for c in listing for i in c["items"]} >= set(SHOWN) | {("mapterhorn-coverage", "mapterhorn_source_coverage__alps")}
    assert httpx.get(f"{viewer}/cog/info", params={"url": "../../etc/passwd"}).status_code == 403
    assert httpx.get(f"{viewer}/api/features", params={"url": "tables/missing.parquet"}).status_code == 404
    assert httpx.get(f"{viewer}/api/view/mining-regions/no-such-item").status_code == 404
    mining = httpx.get(f"{viewer}/api/view/mining-regions/landsat_regions__BWA-2020").json()
    assert mining["focus"][0] == pytest.approx(25.0, abs=WORLD_RES) and mining["focus"][3] == pytest.approx(-22.0, abs=WORLD_RES)  # the written corner
    assert mining["focus"][2] < 25.0 + 200 * WORLD_RES
    assert "red outline: mine polygons" in mining["legend"]["lines"]
    mines = httpx.get(viewer + next(layer["geojson"] for layer in mining["layers"] if layer["type"] == "line")).json()
    assert len(mines["features"]) == 2
    grid = httpx.get(viewer + httpx.get(f"{viewer}/api/view/raster-grids/resampled_square_5km__temperature").json()["layers"][0]["geojson"]).json()
    assert len(grid["features"]) == 48 and sum(f["properties"]["value"] is None for f in grid["features"]) == 1
    tiles = httpx.get(viewer + httpx.get(f"{viewer}/api/view/raster-tiles/raster_tiles__dem").json()["layers"][0]["geojson"]).json()
    assert sorted(f["properties"]["value"] for f in tiles["features"]) == [10.0, 20.0]


def test_a_materialization_links_to_its_view_and_the_base_url_is_configurable(tmp_path, monkeypatch):
    root = tmp_path / "storage"
    write_grid(root)
    table = root / "rasters" / "resampled" / "square_5km" / "temperature.parquet"
    monkeypatch.setenv("GNT_VIEWER_URL", "http://viewer.example:9000/")

    @dg.asset(name="resampled_square_5km", partitions_def=dg.StaticPartitionsDefinition(["temperature"]))
    def grid(context) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=catalog_metadata(context, UPath(root), {"table": table}))

    result = dg.materialize([grid], partition_key="temperature", instance=dg.DagsterInstance.ephemeral())
    metadata = result.asset_materializations_for_node("resampled_square_5km")[0].metadata
    assert metadata["view"].url == "http://viewer.example:9000/#raster-grids/resampled_square_5km__temperature"
    monkeypatch.delenv("GNT_VIEWER_URL")
    assert viewer_url("sentinel-cubes", "a|b") == "http://127.0.0.1:8008/#sentinel-cubes/a%7Cb"
    assert "view" not in catalog_metadata_for_tarball(root)  # an archive is not drawn: no link


def catalog_metadata_for_tarball(root: Path) -> dict:
    (root / "a.tar").write_bytes(b"tar")

    @dg.asset(name="mapterhorn_tarball")
    def tarball(context) -> dg.MaterializeResult:
        return dg.MaterializeResult(metadata=catalog_metadata(context, UPath(root), {"tarball": root / "a.tar"}))

    result = dg.materialize([tarball], instance=dg.DagsterInstance.ephemeral())
    metadata = result.asset_materializations_for_node("mapterhorn_tarball")[0].metadata
    assert "stac_item" in metadata
    return metadata


def map_pixels(png: bytes) -> np.ndarray:
    """The map area of a screenshot taken with the overlays hidden (right of the 300 px sidebar)."""
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[:, 310:]


@needs_browser
@needs_maplibre
def test_each_family_is_drawn_on_the_map_with_its_legend_and_no_failed_request(viewer, tmp_path):
    shots = Path(os.environ.get("GNT_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    browser = Browser(960, 640)  # fewer tiles per page than a desktop window, still the whole legend
    try:
        for collection, item in SHOWN:
            key = f"{collection}/{item}"
            load = browser.open(f"{viewer}/#{key}", ready=key)
            assert load.failures == [], f"{key}: failed requests {load.failures}"
            assert browser.evaluate("window.viewerErrors") == [], key
            legend = browser.evaluate("document.getElementById('legend').innerText")
            assert legend and "footprint" in legend, f"{key}: no legend"
            (shots / f"{collection}.png").write_bytes(browser.screenshot())
            browser.evaluate("document.querySelectorAll('#legend, #title, .maplibregl-control-container').forEach(e => e.style.visibility = 'hidden');"
                             "viewerMap.setLayoutProperty('footprint', 'visibility', 'none');"
                             "new Promise(done => viewerMap.once('idle', () => done(true)))")
            pixels = map_pixels(browser.screenshot())
            drawn = ~(pixels == BACKGROUND).all(-1)
            assert drawn.mean() > 0.05, f"{key}: only {drawn.mean():.1%} of the map is not background"
            assert len(np.unique(pixels[drawn], axis=0)) > 2, f"{key}: the map is one flat colour"
            if collection == "sentinel-cubes":  # red, green, blue in that order: red grows eastwards, green southwards
                rows, cols = np.nonzero(drawn)
                west, east = pixels[rows, cols][cols < np.percentile(cols, 20)], pixels[rows, cols][cols > np.percentile(cols, 80)]
                assert east[:, 0].mean() > west[:, 0].mean() + 100 and abs(east[:, 1].mean() - west[:, 1].mean()) < 30
            browser.evaluate("document.querySelectorAll('#legend, #title, .maplibregl-control-container').forEach(e => e.style.visibility = '')")
    finally:
        browser.close()
