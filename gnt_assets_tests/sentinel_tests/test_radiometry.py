"""One radiometry for both providers: per-item offset/scale (raster:bands, else the processing baseline),
CF scale_factor/add_offset in the cube, and the same month from Earth Search and Planetary Computer agreeing."""

from datetime import date

import numpy as np
import pystac
import pytest
import xarray as xr
from shapely.geometry import box
from upath import UPath

from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube import VARIABLE, month_index
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import DEMO_BBOX, LocalPlanetaryComputerStac, LocalSentinelStac
from gnt_assets.sentinel.mosaic import ChunkJob, mosaic_chunk
from gnt_assets.sentinel.radiometry import RadiometryError, asset_radiometry, to_cube_dn


def _item(properties: dict, band: dict) -> pystac.Item:
    item = pystac.Item("x", None, None, pystac.utils.str_to_datetime("2022-02-01T00:00:00Z"), properties)
    item.add_asset("B04", pystac.Asset("file:///B04.tif", extra_fields={"raster:bands": [band]}))
    return item


def test_offset_and_scale_per_item():
    assert asset_radiometry(_item({}, {"scale": 0.0001, "offset": -0.1}), "B04") == (0.0001, -0.1)  # raster:bands wins
    assert asset_radiometry(_item({"s2:processing_baseline": "05.10"}, {"nodata": 0}), "B04") == (0.0001, -0.1)
    assert asset_radiometry(_item({"s2:processing_baseline": "04.00"}, {}), "B04") == (0.0001, -0.1)
    assert asset_radiometry(_item({"s2:processing_baseline": "03.01"}, {}), "B04") == (0.0001, 0.0)
    with pytest.raises(RadiometryError, match="neither raster:bands"):
        asset_radiometry(_item({}, {"nodata": 0}), "B04")
    dn = np.array([[0, 1, 2000, 65000]], "uint16").T  # (pixel, band)
    assert to_cube_dn(dn, ((0.0001, -0.1),)).ravel().tolist() == [0, 1, 2000, 65000]
    assert to_cube_dn(dn, ((0.0001, 0.0),)).ravel().tolist() == [0, 1001, 3000, 65535]  # +1000, clipped, fill kept
    assert to_cube_dn(dn, ((0.0002, 0.0),)).ravel().tolist() == [0, 1002, 5000, 65535]  # another scale: rescaled


def _month(stac, url, cube, layout, chunk, month):
    job = ChunkJob(chunk=chunk, month=month, query=stac.query(url, DEMO_BBOX, date.fromisoformat(month)),
                   band_assets=dict(stac.band_assets), scl_asset=stac.scl_asset, layout=layout, cube=cube, backoff_s=0.0)
    cube.ensure(layout, [month], list(stac.band_assets))
    result = mosaic_chunk(job)
    assert result.success and result.scenes == 3
    rows, cols = layout.regions[chunk]
    index = month_index(month)
    raw = xr.open_zarr(cube.path.path, mask_and_scale=False)[VARIABLE].isel(time=index, y=rows, x=cols).values
    decoded = cube.open()[VARIABLE].isel(time=index, y=rows, x=cols).values
    return raw, decoded


@pytest.mark.parametrize("month", ["2021-12-01", "2024-06-01"])  # before and after processing baseline 04.00
def test_both_providers_give_one_radiometry(stac_url, tmp_path, month):
    cells = named_grid(box(*DEMO_BBOX), "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    layout, chunk = layout_for(cells), cells["chunk"].iloc[0]
    earth_search, planetary = LocalSentinelStac(url=stac_url), LocalPlanetaryComputerStac(url=stac_url)
    es_raw, es = _month(earth_search, stac_url, CubeStore(UPath(tmp_path / "es.zarr")), layout, chunk, month)
    pc_raw, _ = _month(planetary, stac_url, CubeStore(UPath(tmp_path / "pc.zarr")), layout, chunk, month)
    both = (es_raw > 0) & (pc_raw > 0)
    assert both.mean() > 0.5
    assert np.abs(es_raw.astype(int) - pc_raw.astype(int))[both].max() <= 1  # within 1 DN where scenes are the same
    # CF scale_factor/add_offset: the opened cube is reflectance, DN * 1e-4 - 0.1, NaN for fill.
    assert np.allclose(es[both], es_raw[both] * 1e-4 - 0.1) and np.isnan(es[es_raw == 0]).all()
    assert 0.0 < float(np.nanmedian(es)) < 0.5


def test_planetary_computer_dn_before_the_baseline_change_lack_the_offset(stac_url):
    """The stand-in serves what the providers serve: without harmonization the two would differ by 1000 DN."""
    from gnt_assets.sentinel.stac import search_scenes

    planetary, earth_search = LocalPlanetaryComputerStac(url=stac_url), LocalSentinelStac(url=stac_url)
    for month, baseline in (("2021-12-01", "03.01"), ("2024-06-01", "05.10")):
        pc_items = search_scenes(planetary.query(stac_url, DEMO_BBOX, date.fromisoformat(month)))
        es_items = search_scenes(earth_search.query(stac_url, DEMO_BBOX, date.fromisoformat(month)))
        assert len(pc_items) == len(es_items) == 3
        assert {i.properties["s2:processing_baseline"] for i in pc_items} == {baseline}
        assert "offset" not in pc_items[0].assets["B04"].extra_fields["raster:bands"][0]
        assert es_items[0].assets["red"].extra_fields["raster:bands"][0]["offset"] == -0.1
        import rasterio

        with rasterio.open(pc_items[0].assets["B04"].href) as pc, rasterio.open(es_items[0].assets["red"].href) as es:
            pc_dn, es_dn = pc.read(1).astype(int), es.read(1).astype(int)
        assert int(np.median(es_dn - pc_dn)) == (1000 if baseline == "03.01" else 0)
