"""The rasters pipeline through Dagster on generated rasters: sensor registration, tiles,
resampling onto the square and H3 grids, the result cache, and bad input failing only its partition."""

import dagster as dg
import numpy as np
import rasterio
from exactextract import exact_extract
from rasterio.transform import from_origin

from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.rasters import catalog as raster_catalog
from gnt_assets.rasters import definitions, resample, sources, tiling
from gnt_assets.rasters.assets import grid_assets, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.jobs import raster_cache_cleanup
from gnt_assets.rasters.local import sample_rasters, write_geotiff
from gnt_assets.rasters.sensors import raster_folder_sensor


def _materialize(instance, resources, selection, partition_key=None, raise_on_error=True, run_config=None):
    return dg.materialize(
        assets=[*definitions.defs.assets, *definitions.defs.asset_checks], selection=selection, partition_key=partition_key,
        instance=instance, resources=resources, raise_on_error=raise_on_error, run_config=run_config,
    )


def _register(instance, resources, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={k: resources[k] for k in ("storage", "raster_folder")})
    result = raster_folder_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def _failure_text(run):
    texts = []
    for event in run.all_events:
        error = event.event_specific_data.error if event.is_step_failure else None
        while error is not None:
            texts.append(error.message)
            error = error.cause
    return " ".join(texts)


def _check_results(result):
    return {(e.asset_check_key.asset_key.to_user_string(), e.asset_check_key.name): e.passed for e in result.get_asset_check_evaluations()}


def test_register_tile_resample_and_cache(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    sample_rasters(folder, size=150)
    result = _register(instance, resources)
    assert sorted(r.partition_key for r in result.run_requests) == ["landcover", "species_count", "temperature"]
    assert _register(instance, resources, result.cursor).run_requests == []  # nothing new the second time

    _materialize(instance, resources, [a.key for a in grid_assets])
    selection = [raster_source.key, raster_tiles.key, *(a.key for a in resampled_assets)]
    for key in ("temperature", "landcover", "species_count"):
        run = _materialize(instance, resources, selection, key)
        assert all(_check_results(run).values()), _check_results(run)

    index = read_table(storage_root / "rasters" / "tiles" / "temperature" / "index.parquet")
    assert len(index) == 4 and index.tile_id.is_unique  # 150 px in 100 px tiles: 2 x 2
    with rasterio.open(folder / "temperature.tif") as src:
        band = src.read(1)
    assert index.valid_count.sum() + index.nodata_count.sum() == band.size
    assert index.nodata_count.sum() == int((band == -9999).sum())
    store = str(storage_root / "rasters" / "tiles" / "temperature" / "tiles.zarr")
    for row in index.itertuples():  # every tile comes back from its one chunk, equal to the source window
        tile = tiling.read_tile(store, row.chunk_key)
        np.testing.assert_array_equal(tile, band[row.row_off : row.row_off + row.height, row.col_off : row.col_off + row.width])

    square = read_table(storage_root / "rasters" / "resampled" / "square_5km" / "temperature.parquet")
    assert set(square.method) == {"mean", "bilinear"}
    assert square.cell_id.str.match(r"^C5000_\d{5}_\d{5}$").all()
    assert ((square.valid_fraction >= 0) & (square.valid_fraction <= 1)).all()
    # End to end, the pipeline's means equal exactextract's over the same cells in the raster's CRS.
    cells = read_table(storage_root / "rasters" / "grids" / "square_5km.parquet")
    info = raster_catalog.load_source(storage_root / "rasters", "temperature")
    local = resample.cells_in_raster_crs(cells, info.crs, (info.left, info.bottom, info.right, info.top), raster_name="t", grid_name="g")
    reference = exact_extract(str(folder / "temperature.tif"), local[["cell_id", "geometry"]], "mean", include_cols=["cell_id"], output="pandas")
    ours = square[square.method == "mean"].set_index("cell_id").value.reindex(reference.cell_id).to_numpy()
    np.testing.assert_allclose(ours, reference["mean"].to_numpy(float), rtol=1e-6)
    hexes = read_table(storage_root / "rasters" / "resampled" / "h3_5km" / "landcover.parquet")
    assert set(hexes.method) == {"majority", "nearest"} and set(hexes.value.dropna()) <= {1, 2, 3, 4, 5, 6}
    counts = read_table(storage_root / "rasters" / "resampled" / "square_5km" / "species_count.parquet")
    assert set(counts.method) == {"sum"}

    # Unchanged source + grid + method: the result store answers, nothing is recomputed.
    again = _materialize(instance, resources, [resampled_assets[0].key], "temperature")
    metadata = again.asset_materializations_for_node(resampled_assets[0].key.path[-1])[0].metadata
    assert metadata["computed"].value == 0 and metadata["cache_hits"].value == 2

    _materialize(instance, resources, ["raster_catalog"])
    catalog = read_table(storage_root / "rasters" / "catalog.parquet")
    assert set(catalog.key) == {"temperature", "landcover", "species_count"} and (catalog.status == "ready").all()

    # A replaced file is registered again; its new content hash makes the old results stale.
    (folder / "species_count.tif").write_bytes((folder / "temperature.tif").read_bytes())
    changed = _register(instance, resources, result.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["species_count"] and not changed.dynamic_partitions_requests

    store = resample.ResultStore(storage_root / "rasters" / "cache")
    before = store.stats()["entries"]
    raster_cache_cleanup.execute_in_process(instance=instance, resources={"storage": resources["storage"]},
                               run_config={"ops": {"clean_result_cache": {"config": {"days_old": 0, "min_access": 1}}}})
    assert 0 < store.stats()["entries"] < before  # entries hit once (temperature) survive min_access=1


def _bad_inputs(folder, registry):
    transform = from_origin(10, 46, 0.01, 0.01)
    good = np.ones((20, 20), "float32")
    write_geotiff(folder / "good.tif", good, crs="EPSG:4326", transform=transform, nodata=-1.0)
    write_geotiff(folder / "no_crs.tif", good, crs=None, transform=transform, nodata=-1.0)
    write_geotiff(folder / "bad nodata!.tif", np.ones((20, 20), "uint8"), crs="EPSG:4326", transform=transform, nodata=None)
    (folder / "bad nodata!.yaml").write_text("nodata: 300\n")
    data = (folder / "good.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    (folder / "corrupt.tif").write_bytes(b"II*\x00garbage" * 10)
    registry.write_text("rasters:\n  - path: incoming/missing.tif\n    name: missing\n")


def test_bad_input_fails_its_own_partition_and_catalog_keeps_good_entries(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    _bad_inputs(folder, storage_root / "rasters" / "registry.yaml")
    keys = sorted(r.partition_key for r in _register(instance, resources).run_requests)
    assert keys == ["bad_nodata", "corrupt", "good", "missing", "no_crs", "truncated"]
    problems = {"bad_nodata": "outside the range of uint8", "corrupt": "not a readable raster", "missing": "missing file",
                "no_crs": "has no CRS", "truncated": "truncated.tif"}
    assert _materialize(instance, resources, [raster_source.key], "good").success
    for key, text in problems.items():
        run = _materialize(instance, resources, [raster_source.key], key, raise_on_error=False)
        assert not run.success
        message = _failure_text(run)
        assert text in message, (key, message)
    # the good file later turns bad: the catalog keeps its last good entry and records the error
    (folder / "good.tif").write_bytes(b"not a tiff")
    assert not _materialize(instance, resources, [raster_source.key], "good", raise_on_error=False).success
    _materialize(instance, resources, ["raster_catalog"])
    catalog = read_table(storage_root / "rasters" / "catalog.parquet").set_index("key")
    # its state is error now, beside the last good description (CRS, hash) it registered with
    assert catalog.loc["good", "status"] == "error" and "not a readable raster" in catalog.loc["good", "error"]
    assert catalog.loc["good", "crs"] == "EPSG:4326" and catalog.loc["good", "content_hash"]
    assert (catalog.drop(index="good").status == "error").all()


def test_grid_not_intersecting_names_raster_and_grid(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    write_geotiff(folder / "far_away.tif", np.ones((10, 10), "float32"), crs="EPSG:4326", transform=from_origin(-120, 40, 0.01, 0.01), nodata=-1.0)
    _register(instance, resources)
    _materialize(instance, resources, [grid_assets[0].key])
    _materialize(instance, resources, [raster_source.key], "far_away")
    run = _materialize(instance, resources, [resampled_assets[0].key], "far_away", raise_on_error=False)
    message = _failure_text(run)
    assert "does not intersect" in message and "far_away.tif" in message and "square_5km" in message


LOCAL_CRS = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'


def test_unsupported_crs_and_unusable_names_stay_in_their_own_lane(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    ones = np.ones((10, 10), "float32")
    write_geotiff(folder / "site.tif", ones, crs=LOCAL_CRS, transform=from_origin(0, 10, 1, 1), nodata=-1.0)
    write_geotiff(folder / "!!!.tif", ones, crs="EPSG:4326", transform=from_origin(10, 46, 0.01, 0.01), nodata=-1.0)
    write_geotiff(folder / "a b.tif", ones, crs="EPSG:4326", transform=from_origin(10, 46, 0.01, 0.01), nodata=-1.0)
    write_geotiff(folder / "a_b.tif", ones, crs="EPSG:4326", transform=from_origin(10, 46, 0.01, 0.01), nodata=-1.0)
    (storage_root / "rasters" / "registry.yaml").write_text("rasters:\n  - name: no path here\n")
    problems = []
    found = sources.discover(folder, storage_root / "rasters" / "registry.yaml", problems)
    assert sorted(found) == ["a_b", "site"]
    assert any("!!!.tif" in p for p in problems) and any("already taken" in p for p in problems)
    assert any("entry 1 has no 'path'" in p for p in problems)
    assert sorted(r.partition_key for r in _register(instance, resources).run_requests) == ["a_b", "site"]

    _materialize(instance, resources, [grid_assets[1].key])
    assert _materialize(instance, resources, [raster_source.key], "site").success
    run = _materialize(instance, resources, [resampled_assets[1].key], "site", raise_on_error=False)
    message = _failure_text(run)
    assert "site.tif" in message and "not supported for grid 'h3_5km'" in message, message
    _materialize(instance, resources, ["raster_catalog"])  # a source with no lon/lat extent is still listed
    catalog = read_table(storage_root / "rasters" / "catalog.parquet").set_index("key")
    assert catalog.loc["site", "status"] == "pending" and catalog.loc["site"].geometry is None  # validated, never tiled
    assert "validated" in catalog.loc["site", "status_detail"]


def test_a_killed_tiles_build_resumes_with_the_tiles_it_wrote(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    write_geotiff(folder / "big.tif", np.arange(250 * 250, dtype="float32").reshape(250, 250), crs="EPSG:4326",
                  transform=from_origin(10, 46, 0.001, 0.001), nodata=-1.0)
    _register(instance, resources)
    _materialize(instance, resources, [raster_source.key], "big")
    info = raster_catalog.load_source(storage_root / "rasters", "big")
    # what a run killed after four of its nine tiles leaves: the resumable build folder with their chunks and records
    tiles = storage_root / "rasters" / "tiles" / "big"
    tiles.mkdir(parents=True)
    staged = tiles / f".resume-tiles.zarr.{tiling.resume_token(info, 100)}"
    staged.mkdir()
    tasks = tiling.tile_tasks(info, staged, {}, 100)
    for task in tasks[:4]:
        tiling.write_tile(task)
    written = {p.name: p.stat().st_mtime_ns for p in (staged / "band_data").iterdir() if not p.name.startswith(".")}
    assert len(written) == 4

    run = _materialize(instance, resources, [raster_tiles.key], "big")
    assert run.asset_materializations_for_node("raster_tiles")[0].metadata["tiles_resumed"].value == 4
    store = tiles / "tiles.zarr"
    assert not staged.exists() and not (store / tiling.PROGRESS).exists()
    assert {n: (store / "band_data" / n).stat().st_mtime_ns for n in written} == written  # taken up, not rewritten
    with rasterio.open(folder / "big.tif") as src:
        np.testing.assert_array_equal(tiling.open_array(store.path, {}, mode="r")[0], src.read(1))
    index = read_table(tiles / "index.parquet")
    assert len(index) == 9 and index.tile_id.is_unique and index.valid_count.sum() == 250 * 250
