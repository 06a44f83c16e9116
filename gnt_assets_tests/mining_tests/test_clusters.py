"""Clustering properties (hypothesis) and the polygon validation's bad input."""

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components

from gnt_assets.core.worldgrid import tiles_covering
from gnt_assets.mining.clusters import SCHEMA, cluster_country, envelopes
from gnt_assets.mining.local.samples import sample_polygons
from gnt_assets.mining.polygons import PolygonFileError, validate_polygons

mine = st.tuples(st.floats(20.0, 20.3), st.floats(-10.3, -10.0), st.floats(0.0005, 0.02), st.floats(0.0005, 0.02))


def _mines(specs) -> gpd.GeoDataFrame:
    geometries = [shapely.box(x, y, x + w, y + h) for x, y, w, h in specs]
    return gpd.GeoDataFrame({"mine_id": np.arange(len(specs)), "ISO3_CODE": "ZMB"}, geometry=geometries, crs="EPSG:4326")


def _pairwise(env, share=0.75):
    """The seed's all-pairs overlap matrix."""
    n = len(env)
    matrix = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(n):
            w = min(env[i, 2], env[j, 2]) - max(env[i, 0], env[j, 0])
            h = min(env[i, 3], env[j, 3]) - max(env[i, 1], env[j, 1])
            matrix[i, j] = max(w, 0) * max(h, 0) > share * (env[i, 2] - env[i, 0]) * (env[i, 3] - env[i, 1])
    return connected_components(matrix, directed=False)[1]


@settings(max_examples=40, deadline=None)
@given(st.lists(mine, min_size=1, max_size=25), st.randoms(use_true_random=False), st.sampled_from([0.005, 0.05]))
def test_clusters_partition_mines_independent_of_order_and_cover_them(specs, rnd, buffer):
    mines = _mines(specs)
    clusters = cluster_country(mines, "ZMB", buffer)
    SCHEMA.validate(pd.DataFrame(clusters.drop(columns="geometry")))
    ids = sorted(i for members in clusters["mine_ids"] for i in members)
    assert ids == list(range(len(specs)))  # every mine in exactly one cluster
    order = list(range(len(specs)))
    rnd.shuffle(order)
    shuffled = cluster_country(mines.iloc[order], "ZMB", buffer)
    assert list(shuffled["cluster_id"]) == list(clusters["cluster_id"])
    assert list(map(list, shuffled["mine_ids"])) == list(map(list, clusters["mine_ids"]))
    for row in clusters.itertuples():
        region = shapely.box(row.minx, row.miny, row.maxx, row.maxy)
        assert all(region.covers(mines.geometry[i]) for i in row.mine_ids)
        # the tile list is exactly the world tiles of the tile-aligned region, and holds every mine's tiles
        tiles = [tuple(t) for t in row.tiles]
        assert tiles == tiles_covering((row.minx + 1e-9, row.miny + 1e-9, row.maxx - 1e-9, row.maxy - 1e-9))
        assert all(set(tiles_covering(mines.geometry[i].bounds)) <= set(tiles) for i in row.mine_ids)
    pairwise = _pairwise(envelopes(shapely.bounds(mines.geometry.to_numpy()), buffer))
    groups = {frozenset(np.nonzero(pairwise == label)[0].tolist()) for label in np.unique(pairwise)}
    assert groups == {frozenset(m) for m in clusters["mine_ids"]}


def test_antimeridian_cluster_has_tiles_on_both_sides():
    checked = validate_polygons(sample_polygons(), "sample")
    fiji = cluster_country(checked.valid, "FJI")
    crossing = fiji[fiji["crosses_antimeridian"]]
    assert len(crossing) == 1
    columns = {ix for ix, _ in crossing["tiles"].iloc[0]}
    assert min(columns) == 0 and max(columns) > 20000  # west of 180 and east of -180
    assert crossing["maxx"].iloc[0] - crossing["minx"].iloc[0] < 1.0


def test_validation_reports_each_bad_row_and_whole_file_errors():
    frame = sample_polygons()
    checked = validate_polygons(frame, "sample.gpkg")
    reasons = set(checked.rejects["reason"])
    assert {"empty geometry", "unknown ISO3 code 'XXA'", "Point is not a polygon"} <= reasons
    assert checked.made_valid == 1 and len(checked.valid) + len(checked.rejects) == len(frame)
    with pytest.raises(PolygonFileError, match=r"sample.gpkg: the file has no CRS"):
        validate_polygons(frame.set_crs(None, allow_override=True), "sample.gpkg")
    with pytest.raises(PolygonFileError, match="projected"):
        validate_polygons(frame.dropna(subset=["geometry"]).iloc[:5].to_crs(3857), "sample.gpkg")
    with pytest.raises(ValueError, match="country ATA: no valid mine polygons"):
        cluster_country(checked.valid, "ATA")


def test_ring_drawn_across_the_antimeridian_is_unwrapped_and_split_bad_rows_named_by_row_and_file():
    # a small Fiji mine drawn as one ring from 179.95 to -179.95 (the 359.9-degree "cluster" of the issue)
    across = shapely.Polygon([(179.95, -16.80), (-179.95, -16.80), (-179.95, -16.85), (179.95, -16.85)])
    huge = shapely.box(10.0, 0.0, 20.0, 1.0)  # valid, but no mine is 10 degrees wide
    spike = shapely.Polygon([(0, 0), (1, 1), (0, 0), (1, 1)])  # invalid, make_valid leaves no polygon
    mine = shapely.box(27.0, -26.2, 27.01, -26.19)
    frame = gpd.GeoDataFrame({"ISO3_CODE": ["FJI", "ZAF", "ZAF", "ZAF", "ZAF", "NAM"], "COUNTRY_NAME": "x", "AREA": 1.0},
                             geometry=[across, huge, spike, mine, shapely.Polygon(mine.exterior.coords[::-1]), mine], crs=4326)
    checked = validate_polygons(frame, "mines.gpkg")
    reasons = dict(zip(checked.rejects["mine_id"], checked.rejects["reason"], strict=True))
    assert set(reasons) == {1, 2, 4}  # the same polygon in another country is not a duplicate
    assert reasons[1].startswith("spans 10.00 x 1.00 degrees") and reasons[2].startswith("invalid geometry that cannot be repaired")
    assert reasons[4] == "duplicate of row 3" and set(checked.rejects["source"]) == {"mines.gpkg"}
    fiji = checked.valid[checked.valid["ISO3_CODE"] == "FJI"].geometry.iloc[0]
    assert checked.unwrapped == 1 and fiji.geom_type == "MultiPolygon" and len(fiji.geoms) == 2
    west, east = sorted(fiji.geoms, key=lambda g: -g.bounds[0])
    assert west.bounds == pytest.approx((179.95, -16.85, 180.0, -16.80)) and east.bounds == pytest.approx((-180.0, -16.85, -179.95, -16.80))
    cluster = cluster_country(checked.valid, "FJI", 0.005).iloc[0]
    assert cluster["crosses_antimeridian"] and cluster["maxx"] - cluster["minx"] < 0.2  # not 359.9 degrees
    assert {ix for ix, _ in cluster["tiles"]} >= {0, 20872}  # tiles on both sides of 180
