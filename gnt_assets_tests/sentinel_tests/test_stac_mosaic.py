"""The STAC path against the loopback rustac API: paging, page cap, masked median chunk, bad hrefs, empty month."""

import json
from datetime import UTC, date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box
from upath import UPath

from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube import VARIABLE, month_index
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import COLLECTION, DEMO_BBOX, stac_api_server
from gnt_assets.sentinel.mosaic import ChunkJob, cloud_mask, masked_median, mosaic_chunk, mosaic_chunk_logged
from gnt_assets.sentinel.stac import SceneQuery, StacSearchError, search_scenes

BANDS = {"red": "red", "green": "green", "blue": "blue", "nir": "nir"}


def test_search_pages_and_page_cap(stac_url):
    query = SceneQuery(stac_url, COLLECTION, DEMO_BBOX, date(2024, 6, 1), page_size=1)
    scenes = search_scenes(query)
    assert len(scenes) == 3 and all(s.datetime.month == 6 for s in scenes)
    with pytest.raises(StacSearchError, match="more than 2 pages"):
        search_scenes(SceneQuery(stac_url, COLLECTION, DEMO_BBOX, date(2024, 6, 1), page_size=1, max_pages=2))
    assert search_scenes(SceneQuery(stac_url, COLLECTION, DEMO_BBOX, date(2024, 6, 1), max_cloud=0.1)) == []
    with pytest.raises(StacSearchError, match="search failed"):
        search_scenes(SceneQuery("http://127.0.0.1:9/", COLLECTION, DEMO_BBOX, date(2024, 6, 1)))
    endless = ChunkJob(chunk="c", month="2024-06-01", layout=None, cube=None, band_assets=BANDS, scl_asset="scl",
                       query=SceneQuery(stac_url, COLLECTION, DEMO_BBOX, date(2024, 6, 1), page_size=1, max_pages=2),
                       backoff_s=0.0)
    assert mosaic_chunk_logged(endless).attempts == 1  # paging forever is not retried


def test_masked_median_ignores_masked_and_nodata():
    values = np.array([[[[100]]], [[[300]]], [[[9000]]], [[[0]]]], "uint16")  # (t, y, x, band)
    bad = np.array([False, False, True, False]).reshape(4, 1, 1)
    assert masked_median(values, bad)[0, 0, 0] == 200
    assert masked_median(values, np.ones((4, 1, 1), bool))[0, 0, 0] == 0
    scl = np.full((1, 20, 20), 4, "uint8")
    scl[0, 10, 10] = 9  # a lone cloud pixel is opened away; a big block stays masked
    scl[0, :8, :8] = 8
    mask = cloud_mask(scl)
    assert not mask[0, 10, 10] and mask[0, :6, :6].all()


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 7), st.floats(0.05, 0.95), st.integers(0, 2**32 - 1))
def test_cloud_mask_equals_scipy_morphology_with_a_disk(height, width, radius, cloudy, seed):
    """The row-segment dilation is exact: the same closing and opening as scipy.ndimage with the disk."""
    from scipy import ndimage

    scl = np.where(np.random.default_rng(seed).random((2, height, width)) < cloudy, 9, 4).astype("uint8")
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disk = ((xx * xx + yy * yy) <= radius * radius)[np.newaxis]
    bad = scl != 4
    closed = ndimage.binary_erosion(ndimage.binary_dilation(bad, disk), disk, border_value=1)
    expected = ndimage.binary_dilation(ndimage.binary_erosion(closed, disk, border_value=1), disk)
    assert np.array_equal(cloud_mask(scl, radius), expected if radius else bad)


def _job(url, cube, layout, chunk, month, attempts=1):
    return ChunkJob(chunk=chunk, month=month, query=SceneQuery(url, COLLECTION, DEMO_BBOX, date.fromisoformat(month)),
                    band_assets=BANDS, scl_asset="scl", layout=layout, cube=cube, attempts=attempts, backoff_s=0.0)


def test_chunk_mosaic_bad_href_and_empty_month(stac_url, scenes_dir, tmp_path):
    cells = named_grid(box(*DEMO_BBOX), "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    store = CubeStore(UPath(tmp_path / "cube.zarr"))
    store.ensure(layout, ["2024-06-01", "2024-08-01"], list(BANDS))
    result = mosaic_chunk(_job(stac_url, store, layout, chunk, "2024-06-01"))
    assert result.success and result.scenes == 3 and result.valid_share > 0.5 and result.clear_pixels_unfilled == 0
    assert result.minimum >= 1 and result.maximum < 20000
    rows, cols = layout.regions[chunk]
    at = month_index("2024-06-01")
    written = store.open()[VARIABLE].isel(time=at, y=rows, x=cols).values.copy()
    assert store.status({"time": slice(at, at + 1), "y": rows, "x": cols}).complete

    empty = mosaic_chunk(_job(stac_url, store, layout, chunk, "2024-08-01"))  # no scenes in August
    assert empty.success and empty.scenes == 0 and empty.valid_share == 0

    # Same scenes, one COG 404s and one is corrupt: the partition fails naming the month/chunk, region untouched.
    items = json.loads((scenes_dir / "items.json").read_text())
    june = [f for f in items["features"] if f["properties"]["datetime"].startswith("2024-06")]
    june[0]["assets"]["red"]["href"] = (scenes_dir / "missing.tif").as_uri()
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00not a tiff")
    june[1]["assets"]["nir"]["href"] = corrupt.as_uri()
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"type": "FeatureCollection", "features": june}))
    with stac_api_server(broken) as url:
        failed = mosaic_chunk_logged(_job(url, store, layout, chunk, "2024-06-01", attempts=2))
    assert not failed.success and f"month 2024-06-01 chunk {chunk}" in failed.error and failed.attempts == 2
    assert np.array_equal(store.open()[VARIABLE].isel(time=at, y=rows, x=cols).values, written, equal_nan=True)


def test_planetary_computer_signs_item_hrefs_with_the_sas_token(scenes_dir):
    """The real signing client against a recorded SAS token response (no network): every asset href
    of a Planetary Computer item gets the container's token before odc.stac reads it."""
    from datetime import datetime, timedelta

    import pystac
    import responses

    from gnt_assets.sentinel.resources import PlanetaryComputerStac

    stac = PlanetaryComputerStac()
    item = pystac.Item.from_dict(json.loads((scenes_dir / "items.json").read_text())["features"][0])
    for asset in item.assets.values():
        asset.href = f"https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/10/U/DV/{Path(asset.href).name}"
    expiry = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with responses.RequestsMock() as recorded:
        recorded.get("https://planetarycomputer.microsoft.com/api/sas/v1/token/sentinel2l2a01/sentinel2-l2",
                     json={"msft:expiry": expiry, "token": "sv=2024&sig=recorded"})
        stac.modifier()(item)
    assert all(a.href.endswith("?sv=2024&sig=recorded") for a in item.assets.values())
    assert (stac.collection, stac.scl_asset, stac.band_assets["red"]) == ("sentinel-2-l2a", "SCL", "B04")


@settings(max_examples=60, deadline=None)
@given(dates=st.integers(1, 70), seed=st.integers(0, 2**32 - 1), cloudy=st.floats(0, 1))
def test_masked_median_equals_rounded_bottleneck_nanmedian(dates, seed, cloudy):
    """Both paths (sorting network up to 64 dates, bottleneck above) equal rint(nanmedian) of the masked floats."""
    import bottleneck as bn

    from gnt_assets.sentinel.mosaic import sorting_network

    rng = np.random.default_rng(seed)
    bands = (rng.integers(0, 4, (dates, 6, 5, 2)) * 1000 + rng.integers(0, 3, (dates, 6, 5, 2))).astype("uint16")
    bands[rng.random(bands.shape) < 0.05] = 65535
    bad = rng.random((dates, 6, 5)) < cloudy
    floats = np.where(bad[..., None] | (bands == 0), np.nan, bands.astype(np.float64))
    with np.errstate(all="ignore"):
        expected = np.nan_to_num(np.rint(bn.nanmedian(floats, axis=0)), nan=0).astype("uint16")
    assert np.array_equal(masked_median(bands, bad), expected)
    assert all(a < b for a, b in sorting_network(dates))


def test_a_cell_is_loaded_and_reduced_window_by_window_with_the_same_result(stac_url, tmp_path, monkeypatch):
    """A big cell never sits in memory whole: with 16 px windows a 48 px cell is loaded as 9 windows of at most
    16 px plus the halo a side, and the written median equals the one-window run's pixel for pixel."""
    from dataclasses import replace

    from gnt_assets.sentinel import mosaic

    cells = named_grid(box(*DEMO_BBOX), "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    shapes, real = {2048: [], 16: []}, mosaic._load_group
    written = {}
    for window in shapes:
        monkeypatch.setattr(mosaic, "_load_group", lambda job, items, radiometry, geobox, seen=shapes[window]: (
            seen.append(tuple(geobox.shape)), real(job, items, radiometry, geobox))[1])
        store = CubeStore(UPath(tmp_path / f"cube_{window}.zarr"))
        store.ensure(layout, ["2024-06-01"], list(BANDS))
        result = mosaic_chunk(replace(_job(stac_url, store, layout, chunk, "2024-06-01"), window_px=window))
        assert result.success and result.scenes == 3
        rows, cols = layout.regions[chunk]
        written[window] = (store.open()[VARIABLE].isel(time=month_index("2024-06-01"), y=rows, x=cols).values,
                           result.valid_share, result.clear_pixels_unfilled)
    (height, width), halo = layout.cell_geobox(chunk).shape, mosaic.HALO_PX
    assert (height, width) == (48, 48) and set(shapes[2048]) == {(48 + 2 * halo, 48 + 2 * halo)}
    assert len(shapes[16]) == 9 * len(shapes[2048]) and set(shapes[16]) == {(16 + 2 * halo, 16 + 2 * halo)}
    assert np.array_equal(written[2048][0], written[16][0], equal_nan=True) and written[2048][1:] == written[16][1:]


def test_scenes_over_http_load_as_from_files(scenes_dir, tmp_path):
    """The loopback file server serves the scenes' COGs with byte ranges: items pointing at it load the same
    pixels as the file:// items."""
    import urllib.request

    import odc.stac
    import pystac

    from gnt_assets.sentinel.local import file_server

    collection = json.loads((scenes_dir / "items.json").read_text())
    item = collection["features"][0]
    with file_server(scenes_dir) as base:
        request = urllib.request.Request(f"{base}/{Path(item['assets']['red']['href'][7:]).relative_to(scenes_dir)}",
                                         headers={"Range": "bytes=2-5"})
        with urllib.request.urlopen(request) as response:
            assert response.status == 206 and response.read() == Path(item["assets"]["red"]["href"][7:]).read_bytes()[2:6]
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{base}/../etc/passwd")
        remote = json.loads(json.dumps(item))
        for asset in remote["assets"].values():
            asset["href"] = f"{base}/{Path(asset['href'][7:]).relative_to(scenes_dir)}"
        local, http = (odc.stac.load([pystac.Item.from_dict(i)], bands=["red", "scl"], resolution=10) for i in (item, remote))
        assert all(np.array_equal(local[b].values, http[b].values) for b in ("red", "scl"))
