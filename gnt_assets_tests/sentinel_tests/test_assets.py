"""Through Dagster: AOI -> grid -> chunk sensor adds partitions -> one mosaic partition with its checks -> run log."""

from datetime import UTC

import dagster as dg

from gnt_assets.definitions import defs
from gnt_assets.profiles import resources_for_profile
from gnt_assets.sentinel.local import DEMO_BBOX, LocalSentinelStac
from gnt_assets.sentinel.resources import SentinelCubeResource
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

ASSETS = [*defs.assets, *(defs.asset_checks or [])]


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def test_pipeline_through_dagster(storage_root, instance, stac_url):
    resources = {**resources_for_profile("local"), "sentinel_stac": LocalSentinelStac(url=stac_url)}
    aoi_config = {"ops": {"sentinel_aoi": {"config": {"bbox": list(DEMO_BBOX)}}}}
    grid = dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance, resources=resources,
                          run_config=aoi_config)
    assert _checks(grid) == {"aoi_is_valid_area": True, "grid_layout_disjoint": True}

    sensor_result = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"storage": resources["storage"]}))
    (request,) = sensor_result.dynamic_partitions_requests
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    chunks = instance.get_dynamic_partitions("sentinel_chunk")
    # square cells read square_<i>_<j> (the grid's name once), Major TOM chunks majortom-<ix>_<iy>
    assert {c.split("-")[0].split("_")[0] for c in chunks} == {"square", "majortom"} and sensor_result.run_requests
    assert not any(c.startswith("square-") for c in chunks)
    again = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"storage": resources["storage"]}))
    assert isinstance(again, dg.SkipReason)  # nothing new: no duplicate partitions or runs

    key = dg.MultiPartitionKey({"month": "2024-07-01", "chunk": chunks[0]})
    mosaic = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=str(key), instance=instance, resources=resources)
    checks = _checks(mosaic)
    assert checks["region_written"] and checks["reflectance_plausible"] and checks["no_fill_where_clear"] and checks["scenes_found"]
    metadata = mosaic.asset_materializations_for_node("sentinel_mosaic")[0].metadata
    assert metadata["files"].value >= 1 and metadata["bytes"].value > 0 and metadata["scenes"].value == 3
    assert "rgb" in metadata

    # The same partition into an Icechunk repository: one commit, same checks.
    icechunk = {**resources, "sentinel_cube": SentinelCubeResource(backend="icechunk")}
    committed = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=str(key), instance=instance, resources=icechunk)
    assert all(_checks(committed).values())
    assert committed.asset_materializations_for_node("sentinel_mosaic")[0].metadata["files"].value == metadata["files"].value

    # A backfill-style run of every chunk of a month with no scenes: one run, chunks mapped on the cluster,
    # the cube extended by the new month, fill written and a WARN (not a failure) per partition.
    first, last = (str(dg.MultiPartitionKey({"month": "2024-09-01", "chunk": c})) for c in (chunks[0], chunks[-1]))
    no_scenes = dg.materialize(ASSETS, selection=["sentinel_mosaic"], instance=instance, resources=resources,
                               tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    assert no_scenes.success and _checks(no_scenes)["scenes_found"] is False and _checks(no_scenes)["region_written"]
    written = no_scenes.asset_materializations_for_node("sentinel_mosaic")
    assert {m.partition for m in written} == {str(dg.MultiPartitionKey({"month": "2024-09-01", "chunk": c})) for c in chunks}
    assert len(written[0].metadata["chunk_results"].value.records) == len(chunks)

    log = dg.materialize(ASSETS, selection=["sentinel_run_log"], instance=instance, resources=resources)
    assert _checks(log) == {"no_failed_chunks": True}


def test_an_aoi_that_is_not_an_area_stops_before_the_grid(storage_root, instance, tmp_path):
    import geopandas as gpd
    import shapely

    path = tmp_path / "route.geojson"
    gpd.GeoDataFrame(geometry=[shapely.LineString([(-122.6, 45.4), (-122.5, 45.5)])], crs="EPSG:4326").to_file(path)
    result = dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance,
                            resources=resources_for_profile("local"), raise_on_error=False,
                            run_config={"ops": {"sentinel_aoi": {"config": {"path": str(path)}}}})
    (evaluation,) = result.get_asset_check_evaluations()
    assert not evaluation.passed and "LineString is not an area" in evaluation.metadata["problems"].value
    assert not result.asset_materializations_for_node("sentinel_grid")  # blocking: the grid never ran


def test_monthly_schedule_requests_the_finished_month_for_every_chunk(instance):
    from datetime import datetime

    from gnt_assets.sentinel.schedules import sentinel_monthly_schedule

    when = datetime(2024, 8, 5, 6, tzinfo=UTC)
    assert isinstance(sentinel_monthly_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when)),
                      dg.SkipReason)  # no chunks yet
    instance.add_dynamic_partitions("sentinel_chunk", ["square_1_2", "majortom-b"])
    requests = sentinel_monthly_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    expected = {str(dg.MultiPartitionKey({"month": "2024-07-01", "chunk": c})) for c in ("square_1_2", "majortom-b")}
    assert {r.partition_key for r in requests} == expected
    assert len({r.run_key for r in requests}) == 2  # one run per partition; a re-tick with the same keys is deduplicated


def test_a_tiled_grid_is_one_partition_per_chunk_with_its_cells_fanned_out(storage_root, instance, stac_url):
    """chunk_km > 0: the grid table has a row per super-tile (its cells are not listed); a partition's run
    enumerates the chunk's cells, writes each into the chunk's UTM zone cube and passes the partition's checks."""
    from gnt_assets.io_managers.geoparquet import read_table
    from gnt_assets.sentinel import chunk_runs

    resources = {**resources_for_profile("local"), "sentinel_stac": LocalSentinelStac(url=stac_url)}
    tiles = {"name": "tiles", "generator": "square", "d": 960, "res_m": 20.0, "chunk_km": 1.92}
    config = {"ops": {"sentinel_aoi": {"config": {"bbox": list(DEMO_BBOX)}},
                      "sentinel_grid": {"config": {"grids": [tiles]}}}}
    grid = dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance, resources=resources,
                          run_config=config)
    assert _checks(grid) == {"aoi_is_valid_area": True, "grid_layout_disjoint": True}
    table = read_table(chunk_runs.grid_table_path(resources["storage"]))
    assert set(table["cube"]) == {"tiles_32610"} and table["tiling"].notna().all()
    sensor_result = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"storage": resources["storage"]}))
    (request,) = sensor_result.dynamic_partitions_requests
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    chunks = sorted(request.partition_keys)
    assert chunks == sorted(table["chunk"])
    places = chunk_runs.partition_cells(table, chunks[0])
    assert places and all(c.startswith("tiles-32610_c") for c in places) and all(set(p.layout.regions) == {c} for c, p in places.items())
    assert {(p.cube, p.path, p.layout.geobox.crs.epsg) for p in places.values()} == {("tiles_32610", "", 32610)}  # one zone cube

    key = dg.MultiPartitionKey({"month": "2024-07-01", "chunk": chunks[0]})
    mosaic = dg.materialize(ASSETS, selection=["sentinel_mosaic"], partition_key=str(key), instance=instance, resources=resources)
    checks = _checks(mosaic)
    assert checks["region_written"] and checks["reflectance_plausible"] and checks["no_fill_where_clear"] and checks["scenes_found"]
    records = mosaic.asset_materializations_for_node("sentinel_mosaic")[0].metadata["chunk_results"].value.records
    assert len(records) == 1 and records[0].data["chunk"] == chunks[0]  # one result per partition, its cells combined


def _majortom_cell(stac_url, cell, month):
    """One Major TOM cell's median computed directly on its exact GeoBox: its scenes loaded with the halo in one
    piece, masked, reduced and cropped (no cube, no Dagster)."""
    from datetime import date

    from gnt_assets.sentinel.cube import CubeLayout
    from gnt_assets.sentinel.local import COLLECTION
    from gnt_assets.sentinel.mosaic import HALO_PX, ChunkJob, cloud_mask, load_scenes, masked_median
    from gnt_assets.sentinel.stac import SceneQuery, search_scenes

    layout = CubeLayout(cell.geobox, max(cell.width, cell.height), {cell.key: (slice(0, cell.height), slice(0, cell.width))})
    query = SceneQuery(stac_url, COLLECTION, tuple(cell.geobox.geographic_extent.boundingbox), date.fromisoformat(month))
    bands = {b: b for b in ("red", "green", "blue", "nir")}
    job = ChunkJob(chunk=cell.key, month=month, query=query, band_assets=bands, scl_asset="scl", layout=layout, cube=None)
    values, scl = load_scenes(job, search_scenes(query))
    inner = (slice(None), slice(HALO_PX, HALO_PX + cell.height), slice(HALO_PX, HALO_PX + cell.width))
    return masked_median(values[inner], (cloud_mask(scl) | (values == 0).any(axis=-1))[inner])


def test_majortom_cells_are_stored_as_their_own_images_on_their_exact_geoboxes(storage_root, instance, stac_url):
    """A Major TOM grid (with overlap=True) through Dagster: a partition per lon/lat chunk, each cell written as its
    own image (a zarr store per cell, the overlap layer in a folder of its own) on exactly the GeoBox
    MajorTomTiling gives it; the stored cells cover the AOI and one cell equals its direct computation."""
    import numpy as np
    import shapely
    import xarray as xr
    import zarr
    from odc.geo.xr import ODCExtension  # noqa: F401 (the .odc accessor)
    from shapely.geometry import box

    from gnt_assets.io_managers.geoparquet import read_table
    from gnt_assets.sentinel import chunk_runs
    from gnt_assets.sentinel.cube import VARIABLE, month_index
    from gnt_assets.sentinel.tiling import MajorTomTiling

    resources = {**resources_for_profile("local"), "sentinel_stac": LocalSentinelStac(url=stac_url)}
    grid = {"name": "mt", "generator": "majortom", "d": 1000, "res_m": 20.0, "overlap": True, "chunk_deg": 0.01}
    config = {"ops": {"sentinel_aoi": {"config": {"bbox": list(DEMO_BBOX)}}, "sentinel_grid": {"config": {"grids": [grid]}}}}
    built = dg.materialize(ASSETS, selection=["sentinel_aoi", "sentinel_grid"], instance=instance, resources=resources,
                           run_config=config)
    assert _checks(built) == {"aoi_is_valid_area": True, "grid_layout_disjoint": True}
    storage, aoi = resources["storage"], box(*DEMO_BBOX)
    table = read_table(chunk_runs.grid_table_path(storage))
    sensor_result = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources={"storage": storage}))
    (request,) = sensor_result.dynamic_partitions_requests
    instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    chunks = instance.get_dynamic_partitions("sentinel_chunk")
    assert sorted(chunks) == sorted(table["chunk"]) and all(c.startswith("mt-") for c in chunks)

    month = "2024-06-01"
    first, last = (str(dg.MultiPartitionKey({"month": month, "chunk": c})) for c in (chunks[0], chunks[-1]))
    run = dg.materialize(ASSETS, selection=["sentinel_mosaic"], instance=instance, resources=resources,
                         tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
    blocking = {"region_written", "time_axis_monthly", "reflectance_plausible", "no_fill_where_clear", "scenes_found"}
    assert run.success and all(v for k, v in _checks(run).items() if k in blocking), _checks(run)
    assert {m.partition for m in run.asset_materializations_for_node("sentinel_mosaic")} == \
        {str(dg.MultiPartitionKey({"month": month, "chunk": c})) for c in chunks}

    tiling = MajorTomTiling("mt", d=1000, res_m=20.0, overlap=True, chunk_deg=0.01)
    expected = [cell for chunk in chunks for cell in tiling.cells(chunk, aoi)]
    assert {c.layer for c in expected} == {0, 1}
    footprints = {0: [], 1: []}
    for chunk in chunks:
        for cell in tiling.cells(chunk, aoi):
            path = storage.path("sentinel", f"cube_{tiling.layer_name(cell.layer)}", chunk, f"{cell.key}.zarr").path
            data = zarr.open_group(path, mode="r")[VARIABLE]  # plain zarr-python
            assert data.shape[1:] == (cell.height, cell.width, 4) and data.shape[0] > month_index(month)
            stored = xr.open_zarr(path, zarr_format=3, consolidated=False)
            assert stored.odc.geobox == cell.geobox  # the exact GeoBox: its UTM zone, origin and shape
            assert stored["spatial_ref"].attrs["GeoTransform"]
            assert str(stored["time"].values[month_index(month)])[:10] == month
            footprints[cell.layer].append(cell.geobox.footprint("EPSG:4326", npoints=64).geom)
    assert shapely.union_all(footprints[0]).buffer(1e-9).covers(aoi)  # nothing of the AOI is left out

    cell = expected[0]
    chunk = next(c for c in chunks if cell in tiling.cells(c, aoi))
    path = storage.path("sentinel", f"cube_{tiling.layer_name(cell.layer)}", chunk, f"{cell.key}.zarr").path
    stored = xr.open_zarr(path, zarr_format=3, consolidated=False, mask_and_scale=False)
    direct = _majortom_cell(stac_url, cell, month)
    assert (direct > 0).any()
    np.testing.assert_array_equal(stored[VARIABLE].isel(time=month_index(month)).values, direct)
