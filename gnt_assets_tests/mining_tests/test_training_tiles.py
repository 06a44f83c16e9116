"""Cutting training tiles from a zarr region: alignment, NaN handling, labels against the polygons."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from upath import UPath

from gnt_assets.core import packed_tensors
from gnt_assets.mining.regions import SHARD_TILES, create_region, write_cluster
from gnt_assets.mining.training_tiles import (
    BANDS,
    ClusterTile,
    TrainingTileError,
    geometry_hash,
    tile_labels,
    tile_rgb_with_outline,
    tile_window,
    training_tiles,
)
from gnt_assets_tests.mining_tests import training_fixtures as fx


def cluster_tile_list():
    clusters = fx.mining_clusters()
    return [
        ClusterTile(ix, iy, row.cluster_id, geometry_hash(row.geometry))
        for row in clusters.itertuples()
        for ix, iy in row.tiles
    ]


def chunk_files(path: UPath):
    side = 64 * SHARD_TILES

    def present(rows: slice, cols: slice) -> bool:
        return (path / "reflectance" / "c" / "0" / str(rows.start // side) / str(cols.start // side)).exists()

    return present


@pytest.fixture
def region(tmp_path):
    path = fx.write_region(UPath(tmp_path) / "2020.zarr", 2020)
    return path, xr.open_zarr(path.path, consolidated=False)


def test_tiles_are_exact_windows_with_nan_mask_and_centre_rule_labels(region):
    path, dataset = region
    polygons = fx.mine_polygons()
    pack, report = training_tiles(
        dataset, cluster_tile_list(), list(polygons.geometry), partition="ZAF|2020", year=2020,
        chunks_present=chunk_files(path), must_touch=[0, 1, 2, 3],
    )
    # 8 cluster tiles, the NaN-only one left out and reported; the tile both clusters cover appears once.
    assert report.nan_only == [(fx.IX0 + 3, fx.IY0 + 2)]
    assert report.polygons_without_tile == [3]
    assert len(pack.rows["tile_ix"]) == len(pack.arrays) == 6
    truth = fx.reflectance(2020)
    for i, (ix, iy) in enumerate(zip(pack.rows["tile_ix"], pack.rows["tile_iy"], strict=False)):
        record = pack.record(i)
        assert record["features"].dtype == np.float32 and record["labels"].dtype == np.uint8
        r, c = (iy - fx.IY0) * 64, (ix - fx.IX0) * 64
        window = truth[:, r : r + 64, c : c + 64]
        np.testing.assert_array_equal(record["features"], np.nan_to_num(window, nan=0.0))
        np.testing.assert_array_equal(record["valid"][0], np.isfinite(window).all(axis=0))
        # Labels: exactly the pixels whose centres fall inside a mine.
        lon, lat = np.meshgrid(dataset.longitude.values[c : c + 64], dataset.latitude.values[r : r + 64])
        inside = shapely.contains_xy(shapely.union_all(polygons.geometry.values), lon, lat)
        np.testing.assert_array_equal(record["labels"][0], inside)
        assert pack.rows["label_pixels"][i] == inside.sum()
    # The mine crossing a tile edge is labelled on both sides; the neighbour-country mine is labelled too.
    assert sum(p > 0 for p in pack.rows["label_pixels"]) >= 3
    assert pack.attrs["bands"] == list(BANDS)


def test_a_tile_two_clusters_cover_is_stored_once_with_both_clusters_mines(region, tmp_path):
    path, dataset = region
    shared = (fx.IX0 + 1, fx.IY0 + 1)
    geobox = fx.world_tile(*shared)
    left, top = geobox.affine.c, geobox.affine.f
    # one mine of each cluster's in the shared tile (cluster a's in its west half, cluster b's in its east half)
    mines = [shapely.box(left + 3 * fx.RESOLUTION, top - 20 * fx.RESOLUTION, left + 12 * fx.RESOLUTION, top - 4 * fx.RESOLUTION),
             shapely.box(left + 40 * fx.RESOLUTION, top - 60 * fx.RESOLUTION, left + 58 * fx.RESOLUTION, top - 44 * fx.RESOLUTION)]
    pack, _ = training_tiles(dataset, cluster_tile_list(), mines, partition="ZAF|2020", year=2020, chunks_present=chunk_files(path))
    where = [i for i, tile in enumerate(zip(pack.rows["tile_ix"], pack.rows["tile_iy"], strict=True)) if tile == shared]
    assert len(where) == 1
    row = where[0]
    assert pack.rows["cluster_ids"][row] == ["a" * 64, "b" * 64] and pack.rows["cluster_id"][row] == "a" * 64
    labels = pack.record(row)["labels"][0]
    assert labels[4:20, 3:12].all() and labels[44:60, 40:58].all() and labels.sum() == 16 * 9 + 16 * 18
    assert pack.rows["label_pixels"][row] == labels.sum()
    index = pack.write(UPath(tmp_path) / "packed")
    assert index.count == 6 and index.rows["cluster_ids"][row] == ["a" * 64, "b" * 64]


def test_memory_does_not_grow_with_the_tile_count(tmp_path, monkeypatch):
    """tracemalloc's peak while cutting N and 4N tiles: the records go to the spool (here in batches
    of 4, so both runs flush it several times), so only the index rows (a few hundred bytes a tile)
    grow, not the 120 kB tile records."""
    import tracemalloc

    monkeypatch.setattr(packed_tensors, "WRITE_BATCH", 4)
    wide = 16
    geobox = fx.WORLD[fx.IY0 * 64 : (fx.IY0 + 2) * 64, fx.IX0 * 64 : (fx.IX0 + wide) * 64]
    path = UPath(tmp_path) / "wide.zarr"
    create_region(path, geobox)
    write_cluster(path, geobox, np.full((len(BANDS), *geobox.shape), 0.2, "float32"))
    region = xr.open_zarr(path.path, consolidated=False)
    polygons = list(fx.mine_polygons().geometry)

    def peak(count: int) -> int:
        tiles = [ClusterTile(fx.IX0 + k % wide, fx.IY0 + k // wide, "c" * 64, "h") for k in range(count)]
        tracemalloc.start()
        pack, _ = training_tiles(region, tiles, polygons, partition="ZAF|2020", year=2020, chunks_present=lambda rows, cols: True)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(pack.rows["tile_ix"]) == count
        return high

    small, large = peak(8), peak(32)
    assert large < 1.5 * small, (small, large)  # holding the records would be 4x the 8 tiles' 1 MB on top


def test_missing_chunk_fails_naming_partition_and_tile(tmp_path):
    path = fx.write_region(UPath(tmp_path) / "2020.zarr", 2020, missing=[(1, 1)])
    # the region is one shard: losing it leaves the first tile cut without its data
    with pytest.raises(TrainingTileError, match=rf"ZAF\|2020 tile \({fx.IX0}, {fx.IY0}\) of cluster .*missing chunks"):
        training_tiles(
            xr.open_zarr(path.path, consolidated=False), cluster_tile_list(), [], partition="ZAF|2020", year=2020,
            chunks_present=chunk_files(path),
        )


def test_clusters_write_whole_shards_merged_in_any_order(tmp_path):
    """A cluster's write covers the whole shards it touches, keeping the other clusters' pixels there."""
    from gnt_assets.core.zarr_regions import StoreLayout, region_status

    geobox = fx.WORLD[fx.IY0 * 64 : (fx.IY0 + 10) * 64, fx.IX0 * 64 : (fx.IX0 + 12) * 64]  # 2 x 2 shards of 8 x 8 tiles
    west, east = geobox[64:192, 0:128], geobox[128:256, 9 * 64 : 11 * 64]  # in shards (0, 0) and (0, 1)
    inner = geobox[0:64, 7 * 64 : 8 * 64]  # the last tile of shard (0, 0), beside west
    stores = []
    for order in ((west, east, inner), (inner, east, west)):
        path = UPath(tmp_path) / f"{len(stores)}.zarr"
        create_region(path, geobox)
        assert StoreLayout.read(path).units["reflectance"] == {"band": 7, "latitude": 512, "longitude": 512}
        for k, part in enumerate(order):
            value = {id(west): 0.1, id(east): 0.2, id(inner): 0.3}[id(part)]
            written = write_cluster(path, part, np.full((len(BANDS), *part.shape), value, "float32"))
            assert all(span.start % 512 == 0 and (span.stop % 512 == 0 or span.stop == size)
                       for span, size in ((written["latitude"], 640), (written["longitude"], 768))), (k, written)
            assert region_status(path, written, ["reflectance"]).marked
        stores.append(xr.open_zarr(path.path, consolidated=False)["reflectance"].values)
    np.testing.assert_array_equal(stores[0], stores[1])
    data = stores[0]
    assert (data[:, 64:192, 0:128] == np.float32(0.1)).all() and (data[:, 0:64, 448:512] == np.float32(0.3)).all()
    assert (data[:, 128:256, 576:704] == np.float32(0.2)).all()
    assert np.isnan(data).sum() == data.size - 7 * (128 * 128 + 64 * 64 + 128 * 128)


def test_misaligned_or_outside_windows_are_refused(region):
    _, dataset = region
    shifted = fx.WORLD[fx.IY0 * 64 : fx.IY0 * 64 + 64, fx.IX0 * 64 : fx.IX0 * 64 + 64]
    half = dataset.assign_coords(longitude=dataset.longitude + fx.RESOLUTION / 2)
    with pytest.raises(TrainingTileError, match="offset from the world grid"):
        tile_window(half, shifted, "t")
    with pytest.raises(TrainingTileError, match="outside the region"):
        tile_window(dataset, fx.world_tile(fx.IX0 + 4, fx.IY0), "t")


@settings(max_examples=30, deadline=None)
@given(
    x0=st.floats(-2, 66), y0=st.floats(-2, 66), width=st.floats(0.3, 40), height=st.floats(0.3, 40),
)
def test_labels_follow_the_pixel_centre_rule(x0, y0, width, height):
    geobox = fx.world_tile(fx.IX0, fx.IY0)
    left, top = geobox.affine.c, geobox.affine.f
    polygon = shapely.box(
        left + x0 * fx.RESOLUTION, top - (y0 + height) * fx.RESOLUTION,
        left + (x0 + width) * fx.RESOLUTION, top - y0 * fx.RESOLUTION,
    )
    labels = tile_labels([polygon], geobox)
    assert labels.shape == (1, 64, 64)
    columns = (np.arange(64) + 0.5)
    inside_x = (columns > x0 + 1e-6) & (columns < x0 + width - 1e-6)
    inside_y = (columns > y0 + 1e-6) & (columns < y0 + height - 1e-6)
    expected = inside_y[:, None] & inside_x[None, :]
    near_edge_x = np.isclose(columns, x0, atol=1e-5) | np.isclose(columns, x0 + width, atol=1e-5)
    near_edge_y = np.isclose(columns, y0, atol=1e-5) | np.isclose(columns, y0 + height, atol=1e-5)
    undecided = near_edge_y[:, None] | near_edge_x[None, :]
    np.testing.assert_array_equal(labels[0][~undecided], expected[~undecided])


def test_quick_look_burns_the_outline_in(region):
    features = np.full((7, 64, 64), 0.2, np.float32)
    labels = np.zeros((1, 64, 64), np.uint8)
    labels[0, 10:20, 10:20] = 1
    rgb = tile_rgb_with_outline(features, labels, scale=2)
    assert rgb.shape == (3, 128, 128)
    assert rgb[0, 20, 20] > 0.2 and rgb[1, 20, 20] == rgb[1].min()  # outline pixel: red
    assert np.allclose(rgb[:, 30, 30], 0.2)  # interior pixel: the image
