"""Block-by-block resampling (equal to the whole window, memory limit honoured), cubic
convolution as GDAL's, and result keys that cannot go stale."""

import dataclasses
import hashlib
import tracemalloc

import blake3
import geopandas as gpd
import numpy as np
import pandas as pd
import pandera
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject
from upath import UPath

from gnt_assets.rasters import catalog, resample, sources
from gnt_assets.rasters.local import write_geotiff
from gnt_assets.rasters.zonal import coverage_weights, point_sample, zonal

CRS = "EPSG:32633"
TRANSFORM = from_origin(500000.0, 4000000.0, 30.0, 30.0)


def _raster(path, data, nodata=-9999.0, transform=TRANSFORM):
    write_geotiff(UPath(path), data, crs=CRS, transform=transform, nodata=nodata)
    return UPath(path)


def _info(path, **entry):
    return sources.inspect(sources.SourceEntry(key=UPath(path).stem, path=str(path), name=UPath(path).stem, **entry))


def _cells(rng, n, shape, transform=TRANSFORM):
    x = transform.c + rng.uniform(0, shape[1], n) * transform.a
    y = transform.f + rng.uniform(0, shape[0], n) * transform.e
    geoms = shapely.buffer(shapely.points(x, y), rng.uniform(1, 25, n) * transform.a, quad_segs=2)
    return gpd.GeoDataFrame({"cell_id": [f"c{i:04d}" for i in range(n)]}, geometry=geoms, crs=CRS)


def _field(rng, shape):
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    data = (50 + 10 * np.sin(xx / 9) * np.cos(yy / 7) + rng.normal(0, 1, shape)).astype("float32")
    data[40:55, 30:70] = -9999
    return data


ALL = ["mean", "sum", "min", "max", "majority", "nearest", "bilinear", "cubic"]


def test_blocks_equal_the_whole_window(tmp_path):
    rng = np.random.default_rng(3)
    shape = (160, 120)
    data = _field(rng, shape)
    data[data != -9999] = np.round(data[data != -9999] / 5) * 5  # few distinct values for majority
    path = _raster(tmp_path / "f.tif", data)
    info = _info(path)
    cells = _cells(rng, 150, shape)
    whole, _ = resample.resample(info, cells, "g", ALL, resample.ResultStore(UPath(tmp_path / "a")), memory_limit_mb=1000)
    # 0.05 MB -> blocks of a couple of rows: cells straddle many blocks
    blocked, counts = resample.resample(info, cells, "g", ALL, resample.ResultStore(UPath(tmp_path / "b")), memory_limit_mb=0.05)
    assert counts["blocks"] > 50
    key = ["method", "cell_id"]
    whole, blocked = whole.sort_values(key).reset_index(drop=True), blocked.sort_values(key).reset_index(drop=True)
    assert whole[key].equals(blocked[key])
    np.testing.assert_allclose(blocked.value, whole.value, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocked.valid_fraction, whole.valid_fraction, rtol=1e-12, atol=1e-12)
    # and the whole-window path is the direct computation on the full band
    local = resample.cells_in_raster_crs(cells, CRS, (info.left, info.bottom, info.right, info.top), raster_name="f", grid_name="g")
    weights = coverage_weights(local.geometry.values, TRANSFORM, shape)
    for method in ["mean", "max", "majority"]:
        direct = zonal(weights, data, data != -9999, method).value
        ours = whole[whole.method == method].set_index("cell_id").value.reindex(local.cell_id).to_numpy()
        np.testing.assert_allclose(ours, direct, rtol=1e-12)
    assert np.isfinite(blocked.value).sum() > 0.5 * len(blocked)


def test_memory_limit_is_honoured(tmp_path):
    """A band of 2000 x 2000 float32 (16 MB) resampled under a 4 MB limit never holds it whole."""
    rng = np.random.default_rng(1)
    shape = (2000, 2000)
    data = rng.normal(0, 1, shape).astype("float32")
    path = _raster(tmp_path / "big.tif", data)
    info = _info(path)
    del data
    cells = _cells(rng, 300, shape)
    tracemalloc.start()
    try:
        resample.resample(info, cells, "g", ["mean", "cubic"], resample.ResultStore(UPath(tmp_path / "c")), memory_limit_mb=4)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 6 * 2**20, peak / 2**20  # 4 MB budget plus cells and tables; the band alone is 16 MB


def test_blocks_are_whole_tile_rows_where_they_fit():
    """Blocks cover the window once, in order; where a tile row fits the budget they end on the raster's
    tile rows (the window starting at row 300 of the raster), else they are as large as the budget allows."""
    for tile_rows, memory_mb in ((512, 1536), (512, 1536 * 3), (4, 8), (512, 8)):
        plan = resample.BlockPlan.for_window(40_000, 40_000, memory_mb, row_off=300, tile_rows=tile_rows)
        edges = [r0 for r0, _ in plan.rows] + [plan.rows[-1][1]]
        sizes = np.diff(edges)
        assert edges[0] == 0 and edges[-1] == 40_000 and (sizes > 0).all()
        assert sizes.max() * 40_000 * resample.BYTES_PER_BLOCK_PIXEL <= memory_mb * 2**20 * 3 / 8
        if sizes.max() >= tile_rows:
            assert all((300 + e) % tile_rows == 0 for e in edges[1:-1])
        else:
            assert (sizes[:-1] == sizes[0]).all()
    assert len(resample.BlockPlan.for_window(40_000, 40_000, 1536, tile_rows=512).rows) == 79  # 512 rows each


def test_cubic_is_constant_beside_nodata():
    transform = from_origin(0, 20, 1, 1)
    data = np.full((20, 20), 10.0)
    valid = np.ones_like(data, bool)
    valid[:, 10:] = False
    data[~valid] = 0.0
    x = np.linspace(2.1, 10.4, 40)
    points = np.c_[x, np.full_like(x, 7.3)]
    result = point_sample(points, transform, data, valid, "cubic")
    defined = np.isfinite(result.value)
    assert defined[x < 9.5].all() and not defined[x > 10.3].any()
    np.testing.assert_allclose(result.value[defined], 10.0, rtol=1e-12)


def test_cubic_equals_gdal_warp_without_nodata():
    rng = np.random.default_rng(5)
    src = rng.normal(100, 20, (60, 70))
    src_transform = from_origin(1000.0, 2000.0, 10.0, 10.0)
    # destination pixels of the same size, shifted by a fraction of a pixel: GDAL's kernel is not widened
    dst_transform = from_origin(1000.0 + 3.7, 2000.0 - 6.1, 10.0, 10.0)
    dst = np.zeros((56, 66))
    reproject(src, dst, src_transform=src_transform, src_crs=CRS, dst_transform=dst_transform, dst_crs=CRS,
              resampling=Resampling.cubic)
    rows, cols = np.mgrid[2:50, 2:60]
    xs, ys = rasterio.transform.xy(dst_transform, rows.ravel(), cols.ravel())
    ours = point_sample(np.c_[xs, ys], src_transform, src, np.ones_like(src, bool), "cubic")
    np.testing.assert_allclose(ours.value, dst[rows.ravel(), cols.ravel()], rtol=1e-6)


def _resample_one(info, cells, store, method="mean"):
    table, counts = resample.resample(info, cells, "square_5km", [method], store)
    return table.set_index("cell_id").value, counts


def test_redefined_grid_is_recomputed(tmp_path):
    rng = np.random.default_rng(2)
    path = _raster(tmp_path / "r.tif", _field(rng, (100, 100)))
    info = _info(path)
    store = resample.ResultStore(UPath(tmp_path / "cache"))
    x0, y0 = TRANSFORM.c, TRANSFORM.f - 3000

    def grid(size):
        left = x0 + np.arange(0, 3000, size)
        boxes = [shapely.box(a, b - size, a + size, b) for a in left for b in y0 + 3000 - np.arange(0, 3000, size)]
        return gpd.GeoDataFrame({"cell_id": [f"C_{i:03d}" for i in range(len(boxes))]}, geometry=boxes, crs=CRS)

    first, _ = _resample_one(info, grid(600), store)
    again, counts = _resample_one(info, grid(600), store)
    assert counts["cache_hits"] == 1 and counts["computed"] == 0 and again.equals(first)
    # same name, cells redefined at another size (the ids overlap): computed again, right cells
    second, counts = _resample_one(info, grid(300), store)
    assert counts["computed"] == 1 and counts["cache_hits"] == 0
    assert len(second) == 100 and len(first) == 25 and not np.allclose(second.iloc[:25], first)


def test_changed_nodata_is_recomputed_and_changes_the_data_version(tmp_path):
    data = np.full((50, 50), 7.0, "float32")
    data[:, :25] = 0.0
    path = _raster(tmp_path / "n.tif", data, nodata=None)
    store = resample.ResultStore(UPath(tmp_path / "cache"))
    cells = gpd.GeoDataFrame({"cell_id": ["a"]}, geometry=[shapely.box(*rasterio.transform.array_bounds(50, 50, TRANSFORM)[:4])], crs=CRS)
    plain = _info(path)
    masked = _info(path, nodata=0.0)  # what a sidecar "nodata: 0" gives
    assert plain.content_hash == masked.content_hash and sources.data_version(plain) != sources.data_version(masked)
    before, _ = _resample_one(plain, cells, store)
    after, counts = _resample_one(masked, cells, store)
    assert counts["computed"] == 1
    assert before["a"] == pytest.approx(3.5) and after["a"] == pytest.approx(7.0)


def test_raster_replaced_in_place_is_recomputed(tmp_path):
    path = _raster(tmp_path / "p.tif", np.full((40, 40), 1.0, "float32"))
    store = resample.ResultStore(UPath(tmp_path / "cache"))
    cells = gpd.GeoDataFrame({"cell_id": ["a"]}, geometry=[shapely.box(*rasterio.transform.array_bounds(40, 40, TRANSFORM)[:4])], crs=CRS)
    one, _ = _resample_one(_info(path), cells, store)
    _raster(path, np.full((40, 40), 2.0, "float32"))
    two, counts = _resample_one(_info(path), cells, store)
    assert counts["computed"] == 1 and one["a"] == 1.0 and two["a"] == 2.0


def test_content_hash_is_the_files_blake3_and_changes_with_any_byte(tmp_path):
    data = bytearray(np.random.default_rng(6).integers(0, 256, 3 * 2**20 + 17, dtype=np.uint8).tobytes())
    path = UPath(tmp_path / "bytes.bin")
    path.write_bytes(bytes(data))
    digest = sources.content_hash(path)
    assert digest == sources.HASH_PREFIX + blake3.blake3(bytes(data)).hexdigest()
    assert sources.content_hash(path, chunk=2**20 + 3) == digest == sources.content_hash(path)  # any block size, every time
    legacy = hashlib.sha256(bytes(data)).hexdigest()  # a registration from before BLAKE3 is verified by SHA-256
    assert sources.content_hash(path, like=legacy) == legacy
    data[2**21] ^= 1
    path.write_bytes(bytes(data))
    assert sources.content_hash(path) != digest and sources.content_hash(path, like=legacy) != legacy


def test_catalog_lists_sources_hashed_before_blake3_and_refuses_other_hashes(tmp_path):
    info = _info(_raster(tmp_path / "c.tif", np.full((20, 20), 1.0, "float32")))
    folder = UPath(tmp_path / "state")
    catalog.record_source(folder, dataclasses.replace(info, key="old", content_hash="0f" * 32))
    catalog.record_source(folder, info)
    assert sorted(catalog.build_catalog(folder).content_hash) == sorted(["0f" * 32, info.content_hash])
    catalog.record_source(folder, dataclasses.replace(info, key="bad", content_hash="md5:" + "0f" * 16))
    with pytest.raises(pandera.errors.SchemaError):
        catalog.build_catalog(folder)


def test_results_keyed_on_the_old_sha256_are_never_served(tmp_path):
    """Results stored under a key of the file's SHA-256 (the content hash before BLAKE3) are not found
    for the same file hashed now: the new hash names its algorithm, so no two can be equal."""
    path = _raster(tmp_path / "s.tif", np.full((40, 40), 3.0, "float32"))
    store = resample.ResultStore(UPath(tmp_path / "cache"))
    cells = gpd.GeoDataFrame({"cell_id": ["a"]}, geometry=[shapely.box(*rasterio.transform.array_bounds(40, 40, TRANSFORM)[:4])], crs=CRS)
    info = _info(path)
    old = hashlib.sha256(path.read_bytes()).hexdigest()
    for source_hash in (old, info.content_hash.removeprefix(sources.HASH_PREFIX)):
        key = resample.result_key(source_hash=source_hash, grid_hash=resample.grid_content_hash(cells), nodata=info.nodata,
                                  kind=info.kind, band=1, method="mean")
        store.put(key, pd.DataFrame({"cell_id": ["a"], "band": 1, "method": "mean", "value": [99.0], "valid_fraction": [1.0]}))
    values, counts = _resample_one(info, cells, store)
    assert counts["computed"] == 1 and counts["cache_hits"] == 0 and values["a"] == 3.0


def test_cleanup_removes_weights_with_results(tmp_path):
    rng = np.random.default_rng(4)
    path = _raster(tmp_path / "w.tif", _field(rng, (60, 60)))
    store = resample.ResultStore(UPath(tmp_path / "cache"))
    resample.resample(_info(path), _cells(rng, 20, (60, 60)), "g", ["mean"], store)
    stats = store.stats()
    assert list(store.weights_folder.rglob("*.weights")) and stats["entries"] == 1 and stats["weights_entries"] >= 1
    store.cleanup(days_old=0, min_access=1)
    stats = store.stats()
    assert not list(store.weights_folder.rglob("*.weights")) and stats["entries"] == stats["weights_entries"] == 0


