"""AOI validation and grid generators: cells cover the AOI, ids are stable, squares are snapped."""

import geopandas as gpd
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon, box

from gnt_assets.sentinel.aoi import AoiError, aoi_from_bbox, load_geometry_file
from gnt_assets.sentinel.grid import (
    GridError,
    GridSpec,
    chunk_key,
    custom_generator,
    grid_cells,
    named_grid,
    refuse_shared_chunks,
    square_tiling_generator,
)

AOI = box(-123.1332, 49.2738, -123.1263, 49.2774)


@settings(max_examples=8, deadline=None)
@given(lon=st.floats(-123.5, -122.5), lat=st.floats(48.5, 50.0), w=st.floats(0.002, 0.03), h=st.floats(0.002, 0.02))
def test_square_cells_cover_aoi_and_are_snapped(lon, lat, w, h):
    aoi = box(lon, lat, lon + w, lat + h)
    cells = grid_cells(aoi, square_tiling_generator(960, "EPSG:32610"), grid_name="square")
    projected = cells.to_crs("EPSG:32610")
    for minx, miny, maxx, maxy in projected.geometry.bounds.itertuples(index=False):
        assert all(abs(v / 960 - round(v / 960)) < 1e-6 for v in (minx, miny, maxx, maxy))
    assert cells.union_all().buffer(1e-9).covers(aoi)
    assert cells.geometry.intersects(aoi).all()


def test_custom_generator_and_named_grid_schema():
    def two_halves(aoi):
        w, s, e, n = aoi.bounds
        mid = (w + e) / 2
        return gpd.GeoDataFrame({"grid_id": ["west|1", "east/2"]}, geometry=[box(w, s, mid, n), box(mid, s, e, n)], crs="EPSG:4326")

    cells = grid_cells(AOI, custom_generator(two_halves), grid_name="halves")
    assert cells["chunk"].tolist() == ["halves-east_2", "halves-west_1"]  # sanitised, sorted
    grid = named_grid(AOI, "sq", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    assert set(grid.columns) >= {"grid", "chunk", "crs", "resolution", "chunk_px"} and grid["chunk_px"].eq(48).all()


def test_chunk_keys_say_the_grid_name_once():
    cells = grid_cells(AOI, square_tiling_generator(960, "EPSG:32610"), grid_name="square")
    assert cells["chunk"].str.fullmatch(r"square_-?[0-9]+_[0-9]+").all()  # not square-square_...
    assert chunk_key("square", "square_510_5685") == "square_510_5685"
    assert chunk_key("sq", "square_510_5685") == "sq-square_510_5685"  # another square grid keeps its own name
    assert chunk_key("majortom", "c2b2jzhh4ef") == "majortom-c2b2jzhh4ef"


def test_grids_whose_cells_share_keys_are_refused():
    grid = grid_cells(AOI, square_tiling_generator(960, "EPSG:32610"), grid_name="square")
    with pytest.raises(GridError, match="give the grids distinct names"):
        refuse_shared_chunks(gpd.GeoDataFrame(pd.concat([grid, grid.assign(grid="square_copy")]), crs="EPSG:4326"))


def test_zero_cell_grid_is_refused():
    with pytest.raises(GridError, match="zero cells"):
        grid_cells(AOI, custom_generator(lambda aoi: gpd.GeoDataFrame({"grid_id": []}, geometry=[], crs="EPSG:4326")), grid_name="none")


def test_aoi_file_layers_and_bad_inputs(tmp_path):
    path = tmp_path / "aoi.gpkg"
    gpd.GeoDataFrame({"n": [1, 2]}, geometry=[box(10, 45, 10.1, 45.1), box(10.1, 45, 10.2, 45.1)], crs="EPSG:4326").to_file(path, layer="parts")
    assert load_geometry_file(path, "parts").equals(box(10, 45, 10.2, 45.1).normalize()) or abs(load_geometry_file(path, "parts").area - 0.02) < 1e-9
    with pytest.raises(AoiError, match="no such layer"):
        load_geometry_file(path, "missing")
    empty = tmp_path / "empty.geojson"
    gpd.GeoDataFrame({"n": []}, geometry=[], crs="EPSG:4326").to_file(empty)
    with pytest.raises(AoiError, match="no features"):
        load_geometry_file(empty)
    bowtie = tmp_path / "bowtie.geojson"
    gpd.GeoDataFrame({"n": [1]}, geometry=[Polygon([(0, 0), (1, 1), (1, 0), (0, 1)])], crs="EPSG:4326").to_file(bowtie)
    with pytest.raises(AoiError, match="invalid geometry"):
        load_geometry_file(bowtie)
    projected = tmp_path / "utm.geojson"
    gpd.GeoDataFrame({"n": [1]}, geometry=[box(-179.9, 10, 179.9, 11)], crs="EPSG:4326").to_file(projected)
    with pytest.raises(AoiError, match="antimeridian"):
        load_geometry_file(projected)
    with pytest.raises(AoiError, match="antimeridian"):
        aoi_from_bbox((179.5, 10, -179.5, 11))
    with pytest.raises(AoiError, match="longitude/latitude"):
        aoi_from_bbox((500000, 10, 500100, 11))


def test_square_grid_crs_follows_the_aoi():
    """'utm' (the default) is the AOI's own zone: 960 m cells at 50 N are 960 m, not EPSG:32610's 1.4x as many."""
    aoi = box(10.0, 50.0, 10.2, 50.1)
    grid = named_grid(aoi, "square", "square", GridSpec(d=960, target_crs="utm", res_m=20))
    assert grid["crs"].eq("EPSG:32632").all() and grid["area_km2"].round(2).eq(0.92).all()
    fixed = named_grid(aoi, "square", "square", GridSpec(d=960, target_crs="EPSG:32610", res_m=20))
    assert len(fixed) > 1.2 * len(grid)  # the far zone's "960 m" cells are smaller and more


def test_custom_grid_from_a_file_is_selectable(tmp_path):
    from gnt_assets.sentinel.assets import GridConfig

    w, s, e, n = AOI.bounds
    mid = (w + e) / 2
    path = tmp_path / "cells.gpkg"
    gpd.GeoDataFrame({"tile": ["a", "b", "far"]}, geometry=[box(w, s, mid, n), box(mid, s, e, n), box(0, 0, 1, 1)],
                     crs="EPSG:4326").to_file(path, layer="cells")
    config = GridConfig(name="mine", generator="custom", d=1000, path=str(path), layer="cells", id_column="tile",
                        target_crs="utm", res_m=20)
    grid = named_grid(AOI, config.name, config.generator, GridSpec(d=config.d, target_crs=config.target_crs,
                      res_m=config.res_m, id_column=config.id_column), 1, config.path, config.layer)
    assert grid["cell_id"].tolist() == ["a", "b"] and grid["crs"].eq("EPSG:32610").all()  # 'far' does not meet the AOI
    with pytest.raises(GridError, match="id column 'cell'"):
        named_grid(AOI, "x", "custom", GridSpec(id_column="cell"), path=str(path), layer="cells")
    with pytest.raises(GridError, match="cannot be read"):
        named_grid(AOI, "x", "custom", GridSpec(), path=str(tmp_path / "none.gpkg"))
    with pytest.raises(GridError, match="needs 'path'"):
        named_grid(AOI, "x", "custom", GridSpec())
    with pytest.raises(GridError, match="Major TOM grids are tiled"):
        named_grid(AOI, "x", "majortom", GridSpec())
