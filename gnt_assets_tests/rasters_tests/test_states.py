"""Source states through Dagster: the seed's life of a raster (pending -> validating -> tiling -> indexing ->
ready, error, archived), archiving and restoring, the catalog following failures, and rasters off the globe."""

import json

import dagster as dg
import numpy as np
import pytest
from rasterio.transform import from_origin

from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import definitions, sources, states
from gnt_assets.rasters.assets import grid_assets, raster_source, raster_tiles, resampled_assets
from gnt_assets.rasters.cli import main, waiting_for
from gnt_assets.rasters.jobs import raster_archive_job
from gnt_assets.rasters.local import write_geotiff
from gnt_assets_tests.rasters_tests.test_pipeline import _failure_text, _materialize, _register

ONES = np.ones((30, 30), "float32")
REGISTRATION = [raster_source.key, raster_tiles.key, *(a.key for a in resampled_assets)]


def _write(folder, name, left=10.0, top=46.0):
    write_geotiff(folder / f"{name}.tif", ONES, crs="EPSG:4326", transform=from_origin(left, top, 0.01, 0.01), nodata=-1.0)


def _catalog(instance, resources, storage_root):
    _materialize(instance, resources, ["raster_catalog"])
    return read_table(storage_root / "rasters" / "catalog.parquet").set_index("key")


def test_a_source_walks_the_seed_states_and_the_catalog_shows_each(instance, resources, storage_root, capsys):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    _write(folder, "forest")
    _register(instance, resources)
    assert _catalog(instance, resources, storage_root).loc["forest", "status"] == "pending"  # known, nothing run yet

    _materialize(instance, resources, [a.key for a in grid_assets])
    _materialize(instance, resources, [raster_source.key], "forest")
    record = states.read_state(storage_root / "rasters", "forest")
    assert record["state"] == "pending" and "validated" in record["detail"]
    assert waiting_for("raster_tiling", storage_root, []) == ["forest"]

    _materialize(instance, resources, REGISTRATION, "forest")
    record = states.read_state(storage_root / "rasters", "forest")
    assert [state for state, _ in record["history"]] == ["validating", "pending", "validating", "pending", "tiling", "indexing", "ready"]
    assert waiting_for("raster_tiling", storage_root, []) == [] and waiting_for("resampling", storage_root, ["square_5km"]) == []
    catalog = _catalog(instance, resources, storage_root)
    assert catalog.loc["forest", "status"] == "ready" and catalog.loc["forest", "status_since"] == record["since"]

    # the CLI reads the same states, without a webserver
    root = ["--root", str(storage_root)]
    assert main([*root, "status", "--raster-id", "forest"]) == 0
    assert json.loads(capsys.readouterr().out)["state"] == "ready"
    assert main([*root, "list", "--status", "error"]) == 0 and capsys.readouterr().out == ""
    assert main([*root, "list", "--status", "ready"]) == 0 and capsys.readouterr().out.startswith("forest\tready\t")
    assert main([*root, "config-info"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["storage_root"] == str(storage_root) and {g["name"] for g in info["grids"]} >= {"square_5km", "h3_5km"}


def test_a_step_that_fails_leaves_its_source_in_error_with_the_cause(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    _write(folder, "river")
    _register(instance, resources)
    _materialize(instance, resources, [raster_source.key], "river")
    (folder / "river.tif").unlink()  # gone before tiling: the tile step fails
    assert not _materialize(instance, resources, [raster_tiles.key], "river", raise_on_error=False).success
    record = states.read_state(storage_root / "rasters", "river")
    assert record["state"] == "error" and "river.tif" in record["detail"]
    assert [state for state, _ in record["history"]][-2:] == ["tiling", "error"]
    assert waiting_for("validation", storage_root, []) == ["river"]
    assert _catalog(instance, resources, storage_root).loc["river", "status"] == "error"


def test_archiving_retires_outputs_and_partition_and_restoring_registers_again(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    _write(folder, "old_map")
    _write(folder, "new_map")
    cursor = _register(instance, resources).cursor
    _materialize(instance, resources, [a.key for a in grid_assets])
    for key in ("old_map", "new_map"):
        _materialize(instance, resources, REGISTRATION, key)
    rasters = storage_root / "rasters"
    assert (rasters / "resampled" / "square_5km" / "old_map.parquet").exists()

    config = {"ops": {"archive_sources": {"config": {"keys": ["old_map"]}}}}
    assert raster_archive_job.execute_in_process(instance=instance, resources={"storage": resources["storage"]}, run_config=config).success
    assert states.read_state(rasters, "old_map")["state"] == "archived"
    assert instance.get_dynamic_partitions(raster_sources.name) == ["new_map"]
    assert not (rasters / "tiles" / "old_map").exists() and not (rasters / "resampled" / "square_5km" / "old_map.parquet").exists()
    assert not (rasters / "resampled" / "h3_5km" / "old_map.gpkg").exists()
    assert (rasters / "archive" / "old_map" / "tiles" / "old_map" / "index.parquet").exists()
    assert (rasters / "archive" / "old_map" / "resampled" / "h3_5km" / "old_map.parquet").exists()
    assert (rasters / "archive" / "old_map" / "resampled" / "h3_5km" / "old_map.gpkg").exists()
    assert (rasters / "tiles" / "new_map" / "index.parquet").exists()  # the other source is untouched
    catalog = _catalog(instance, resources, storage_root)
    assert catalog.loc["old_map", "status"] == "archived" and catalog.loc["new_map", "status"] == "ready"
    again = _register(instance, resources, cursor)  # the file is still in the watched folder: never registered again
    assert again.run_requests == [] and not again.dynamic_partitions_requests

    config["ops"]["archive_sources"]["config"]["restore"] = True
    assert raster_archive_job.execute_in_process(instance=instance, resources={"storage": resources["storage"]}, run_config=config).success
    restored = _register(instance, resources, again.cursor)
    assert [r.partition_key for r in restored.run_requests] == ["old_map"]

    unknown = {"ops": {"archive_sources": {"config": {"keys": ["no_such_map"]}}}}
    result = raster_archive_job.execute_in_process(instance=instance, resources={"storage": resources["storage"]},
                                                   run_config=unknown, raise_on_error=False)
    assert not result.success and "no_such_map" in _failure_text(result)


def test_the_catalog_is_requested_after_a_registration_fails(instance, resources, storage_root):
    folder = storage_root / "rasters" / "incoming"
    folder.mkdir(parents=True)
    (folder / "empty.tif").write_bytes(b"")  # a 0-byte file: named in the error and listed in the catalog
    _register(instance, resources)
    defs = dg.Definitions(assets=definitions.defs.assets, resources=resources)
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    run = _materialize(instance, resources, [raster_source.key], "empty", raise_on_error=False)
    assert not run.success and "empty.tif" in _failure_text(run)
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor)
    assert first.get_num_requested(dg.AssetKey("raster_catalog")) == 0  # nothing happened upstream yet
    assert after.get_num_requested(dg.AssetKey("raster_catalog")) == 1
    catalog = _catalog(instance, resources, storage_root)
    assert catalog.loc["empty", "status"] == "error" and "empty.tif" in catalog.loc["empty", "error"]


def test_a_raster_past_the_antimeridian_is_refused_with_the_fix(storage_root):
    _write(storage_root, "east", left=179.5, top=1.0)  # 179.5 .. 179.8: on the globe
    assert sources.inspect(sources.SourceEntry(key="east", path=str(storage_root / "east.tif"), name="east")).right < 180
    write_geotiff(storage_root / "wrap.tif", np.ones((10, 200), "float32"), crs="EPSG:4326",
                  transform=from_origin(179.5, 1, 0.01, 0.01), nodata=-1.0)  # 179.5 .. 181.5
    with pytest.raises(sources.RasterSourceError, match=r"wrap\.tif: longitudes 179\.5 to 181\.5 run past .*gdalwarp"):
        sources.inspect(sources.SourceEntry(key="wrap", path=str(storage_root / "wrap.tif"), name="wrap"))
    write_geotiff(storage_root / "edge.tif", np.ones((10, 10), "float32"), crs="EPSG:4326",
                  transform=from_origin(179.9, 1, 0.010000001, 0.01), nodata=-1.0)  # ends a rounding past 180
    assert sources.inspect(sources.SourceEntry(key="edge", path=str(storage_root / "edge.tif"), name="edge"))
