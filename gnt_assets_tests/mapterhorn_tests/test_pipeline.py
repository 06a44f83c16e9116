"""The Mapterhorn pipeline through Dagster, against the real HTTP resource and the loopback server:
sensor -> per-file chain (a reset download resumes, a missing CRS fails its own file and resumes
after the fix) -> merge sensor -> tarball that md5sum accepts, byte-identical on rerun; a ranged run
of every file where one fails: the others are materialized and merged, the failed one is named."""

from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
from dagster._serdes import serialize_value

from gnt_assets.io_managers.geoparquet import GeoParquetIOManager, read_table
from gnt_assets.io_managers.tar import TarIOManager
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.definitions import defs as mapterhorn_defs
from gnt_assets.mapterhorn.local import SourceServer, generate_sources, write_catalog
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mapterhorn.sensors import FILE_ASSETS, SOURCE_ASSETS, mapterhorn_file_list_sensor, mapterhorn_source_merge_sensor
from gnt_assets.resources.storage import StorageResource


@pytest.fixture
def pipeline(storage_root, tmp_path):
    www = tmp_path / "www"
    files = generate_sources(www, size=96)
    with SourceServer(www) as server:
        work = Path(storage_root.path) / "mapterhorn"
        write_catalog(work / "source-catalog", server.base_url, files)
        storage = StorageResource(root=str(storage_root))
        resources = {
            "storage": storage,
            "tar_io_manager": TarIOManager(storage=storage),
            "geoparquet_io_manager": GeoParquetIOManager(storage=storage),
            "mapterhorn_sources": MapterhornSourcesResource(work_dir=str(work), retries=0, backoff_seconds=0),
        }
        yield server, resources


def tick(instance, sensor, resources, cursor=None, ticks=None):
    """One sensor evaluation as the daemon does it; the cursor carries over through ``ticks``."""
    definitions = dg.Definitions.merge(mapterhorn_defs, dg.Definitions(resources=resources))
    cursor = ticks[-1].cursor if ticks else cursor
    with dg.build_sensor_context(instance=instance, definitions=definitions, cursor=cursor, resources={"mapterhorn_sources": resources["mapterhorn_sources"]}) as context:
        result = sensor(context)
    for request in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    if ticks is not None:
        ticks.append(result)
    return [key for r in result.run_requests or [] for key in requested_keys(instance, r)]


def requested_keys(instance, request) -> list[str]:
    """A request's partition key, or the keys of its partition range (the file sensor's ranged runs)."""
    if request.partition_key is not None:
        return [request.partition_key]
    files = instance.get_dynamic_partitions("mapterhorn_files")
    start, end = files.index(request.tags[ASSET_PARTITION_RANGE_START_TAG]), files.index(request.tags[ASSET_PARTITION_RANGE_END_TAG])
    return files[start : end + 1]


def run(instance, resources, selection, key, tags=None):
    return dg.materialize(
        [*mapterhorn_defs.assets], selection=selection, partition_key=key, instance=instance, resources=resources, raise_on_error=False, tags=tags
    )


def file_errors(result) -> dict[str, str]:
    """key -> error of every file the run recorded as failed (its observation on the file's partition)."""
    observations = [e.event_specific_data.asset_observation for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
    return {o.partition: o.metadata["error"].value for o in observations if "error" in o.metadata}


def materialized(result) -> set[str]:
    return {m.partition for m in result.asset_materializations_for_node("mapterhorn_cog")}


def test_sources_to_verified_tarballs(pipeline, instance, storage_root):
    server, resources = pipeline
    root = resources["mapterhorn_sources"].root
    keys = tick(instance, mapterhorn_file_list_sensor, resources)
    assert keys == ["alpine_tiles.tile_2600_1200", "alpine_tiles.tile_2600_1201", "alpine_tiles.tile_2600_1202", "lowland_grids.block_a", "lowland_grids.block_b"]
    assert set(instance.get_dynamic_partitions("mapterhorn_sources")) == {"alpine_tiles", "lowland_grids"}

    # A connection reset mid-download: the step's retry resumes the .part with Range.
    server.faults.add("/alpine_tiles/tile_2600_1200.tif", "reset")
    assert run(instance, resources, FILE_ASSETS, "alpine_tiles.tile_2600_1200").success
    assert FileWork(root, "alpine_tiles.tile_2600_1200").record("download")["resumed_from"] > 0
    assert [r for p, r in server.faults.requests if p.endswith("tile_2600_1200.tif")][-1].startswith("bytes=")

    # No CRS configured: that file fails at georeferencing, naming itself; after the fix it resumes.
    metadata_path = resources["mapterhorn_sources"].catalog() / "lowland_grids" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({k: v for k, v in metadata.items() if k != "crs"}))
    failed = run(instance, resources, FILE_ASSETS, "lowland_grids.block_a")
    assert failed.success and materialized(failed) == set()  # the file failed, alone; the run did not
    assert "block_a_dgm.asc has no CRS and the source's metadata.json configures none" in file_errors(failed)["lowland_grids.block_a"]
    metadata_path.write_text(json.dumps(metadata))
    requests_before = len(server.faults.requests)
    assert run(instance, resources, FILE_ASSETS, "lowland_grids.block_a").success
    assert len(server.faults.requests) == requests_before  # resumed from the verified unpack: no re-download
    assert run(instance, resources, FILE_ASSETS, "lowland_grids.block_b").success
    # The event-log budget: one materialization per file, its metadata counts, sizes, bounds and timings, no previews.
    event = instance.get_latest_materialization_event(dg.AssetKey("mapterhorn_cog")).asset_materialization
    assert "preview" not in event.metadata and len(serialize_value(event)) < 2048
    assert event.metadata["files"].value == 2 and len(event.metadata["bounds_3857"].value) == 4 and event.metadata["coverage_area"].value > 0
    assert set(event.metadata["step_seconds"].value) == {"download", "unpacked", "georeferenced", "cog", "bounds", "polygon"}
    assert json.loads(Path(event.metadata["stac_item"].value).read_text())["properties"]["dagster:partition"] == "lowland_grids.block_b"

    # Only the source whose files are all done is merged.
    merges = []
    assert tick(instance, mapterhorn_source_merge_sensor, resources, ticks=merges) == ["lowland_grids"]
    assert run(instance, resources, SOURCE_ASSETS, "lowland_grids").success
    tar_store = storage_root / "tar-store"
    check = subprocess.run(["md5sum", "-c", "lowland_grids.tar.md5"], cwd=tar_store, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    listing = subprocess.run(["tar", "tf", str(tar_store / "lowland_grids.tar")], capture_output=True, text=True).stdout.split()
    assert listing == ["LICENSE.pdf", "metadata.json", "bounds.csv", "coverage.gpkg", "files/block_a_dgm.tif",
                       "files/block_a_points.tif", "files/block_b_dgm.tif", "files/block_b_points.tif"]
    assert not list((root / "polygons" / "lowland_grids").glob("*.gpkg"))  # deleted after the merge was verified
    bounds = (root / "merged" / "lowland_grids" / "bounds.csv").read_text().splitlines()
    assert bounds[0] == "filename,left,bottom,right,top,width,height" and len(bounds) == 5

    coverage = instance.get_latest_materialization_event(dg.AssetKey("mapterhorn_source_coverage")).asset_materialization.metadata
    assert "data:image/png" in coverage["coverage"].value and coverage["crs"].value == "EPSG:25832"
    report = instance.get_latest_materialization_event(dg.AssetKey("mapterhorn_report")).asset_materialization.metadata
    rows = {r.data["step"]: r.data for r in report["steps"].value.records}
    assert rows["polygon"] == {"step": "polygon", "pending": 0, "done": 2, "failed": 0}
    assert (tar_store / "lowland_grids.tar.md5").read_text() == f"{report['tarball_md5'].value}  lowland_grids.tar\n"
    saved = json.loads((root / "merged" / "lowland_grids" / "report.json").read_text())
    assert saved["tarball_md5"] == report["tarball_md5"].value and report["files"].value == 1
    assert 0 < saved["disk_high_water_bytes"] == report["disk_high_water_bytes"].value

    # Re-running the source (and a file) republishes a byte-identical tarball, bounds rows never doubled.
    first = (tar_store / "lowland_grids.tar").read_bytes()
    assert run(instance, resources, FILE_ASSETS, "lowland_grids.block_b").success
    assert not list((root / "polygons" / "lowland_grids").glob("*.gpkg"))  # the merged polygon is not remade
    again = []
    assert tick(instance, mapterhorn_source_merge_sensor, resources, ticks=again) == ["lowland_grids"]
    assert again[0].run_requests[0].run_key == merges[0].run_requests[0].run_key  # same run key: the daemon does not merge again
    assert run(instance, resources, SOURCE_ASSETS, "lowland_grids").success
    assert (tar_store / "lowland_grids.tar").read_bytes() == first


def test_removed_lines_keep_their_partitions(pipeline, instance):
    _, resources = pipeline
    ticks = []
    tick(instance, mapterhorn_file_list_sensor, resources, ticks=ticks)
    file_list = resources["mapterhorn_sources"].catalog() / "alpine_tiles" / "file_list.txt"
    lines = file_list.read_text().splitlines()
    file_list.write_text("\n".join([*lines[:-2], lines[-1], "http://127.0.0.1:9/alpine_tiles/tile.tif#v2"]) + "\n")
    new = tick(instance, mapterhorn_file_list_sensor, resources, ticks=ticks)
    assert new == ["alpine_tiles.tile"]  # the fragment line becomes a partition that will fail naming itself
    assert "alpine_tiles.tile_2600_1201" in instance.get_dynamic_partitions("mapterhorn_files")
    (removal,) = ticks[-1].asset_events
    assert (removal.asset_key, removal.partition) == (dg.AssetKey("mapterhorn_cog"), "alpine_tiles.tile_2600_1201")
    assert removal.metadata["removed_from_file_list"].value == "alpine_tiles/file_list.txt"
    assert tick(instance, mapterhorn_file_list_sensor, resources, ticks=ticks) == [] and not ticks[-1].asset_events

    # The fragment line fails its own partition, naming the line; the other files are untouched.
    failed = run(instance, resources, FILE_ASSETS, "alpine_tiles.tile")
    error = file_errors(failed)["alpine_tiles.tile"]
    assert "alpine_tiles/file_list.txt line 4" in error and "fragment" in error


def test_an_unsafe_zip_fails_its_own_file_and_the_source_goes_on_without_it(pipeline, instance, tmp_path, storage_root):
    _, resources = pipeline
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../escape.asc", b"ncols 1\n")
    (tmp_path / "www" / "lowland_grids" / "block_b.zip").write_bytes(evil.getvalue())
    tick(instance, mapterhorn_file_list_sensor, resources)
    assert run(instance, resources, FILE_ASSETS, "lowland_grids.block_a").success
    failed = run(instance, resources, FILE_ASSETS, "lowland_grids.block_b")
    # The cause first, not "Exceeded max_retries"; a refused member is never retried.
    assert file_errors(failed)["lowland_grids.block_b"].startswith("ArchiveError: mapterhorn file lowland_grids.block_b: block_b.zip: member '../escape.asc' escapes the archive")
    assert FileWork(resources["mapterhorn_sources"].root, "lowland_grids.block_b").failure()["transient"] is False
    assert not [e for e in failed.all_events if e.event_type_value == "STEP_RESTARTED"]
    (check,) = failed.get_asset_check_evaluations()  # one evaluation per run, the refused file counted at its step
    assert (check.check_name, check.passed, check.severity) == ("files_verified", False, dg.AssetCheckSeverity.WARN)
    assert check.metadata["files_refused"].value == 1 and check.metadata["refused_by_step"].value == {"unpacked": 1}

    # The source goes on without its bad file: the merge takes block_a, the report names block_b.
    assert tick(instance, mapterhorn_source_merge_sensor, resources) == ["lowland_grids"]
    assert run(instance, resources, SOURCE_ASSETS, "lowland_grids").success
    listing = subprocess.run(["tar", "tf", str(storage_root / "tar-store" / "lowland_grids.tar")], capture_output=True, text=True).stdout.split()
    assert listing[4:] == ["files/block_a_dgm.tif", "files/block_a_points.tif"]
    event = instance.get_latest_materialization_event(dg.AssetKey("mapterhorn_report")).asset_materialization
    rows = {r.data["step"]: r.data for r in event.metadata["steps"].value.records}
    assert rows["download"] == {"step": "download", "pending": 0, "done": 2, "failed": 0}
    assert rows["unpacked"] == {"step": "unpacked", "pending": 0, "done": 1, "failed": 1}
    assert rows["cog"] == {"step": "cog", "pending": 1, "done": 1, "failed": 0}
    (named,) = event.metadata["failed"].value.records
    assert named.data["key"] == "lowland_grids.block_b" and named.data["url"].endswith("/lowland_grids/block_b.zip")
    assert named.data["step"] == "unpacked" and "escapes the archive" in named.data["error"]
    report = json.loads((resources["mapterhorn_sources"].root / "merged" / "lowland_grids" / "report.json").read_text())
    assert [f["key"] for f in report["failed_files"]] == ["lowland_grids.block_b"] and report["merged_files"] == 1
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [dg.AssetCheckKey(dg.AssetKey("mapterhorn_report"), "no_failed_files")]
    )[dg.AssetCheckKey(dg.AssetKey("mapterhorn_report"), "no_failed_files")]
    evaluation = check.event.dagster_event.event_specific_data
    assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.WARN

    # A source that requires every file is not merged while one fails, and says which.
    metadata_path = resources["mapterhorn_sources"].catalog() / "lowland_grids" / "metadata.json"
    metadata_path.write_text(json.dumps({**json.loads(metadata_path.read_text()), "require_all_files": True}))
    assert tick(instance, mapterhorn_source_merge_sensor, resources) == []
    refused = run(instance, resources, ["mapterhorn_bounds_csv"], "lowland_grids")
    error = "".join(str(e.event_specific_data.error) for e in refused.all_events if e.is_step_failure)
    assert not refused.success and "sets require_all_files, but 1 file(s) failed" in error and "lowland_grids.block_b (unpacked:" in error


def test_the_demo_broken_file_fails_for_good_at_download_and_is_left_out(pipeline, instance, storage_root):
    server, resources = pipeline
    tick(instance, mapterhorn_file_list_sensor, resources)
    for key in ("alpine_tiles.tile_2600_1200", "alpine_tiles.tile_2600_1201"):
        assert run(instance, resources, FILE_ASSETS, key).success
    broken = run(instance, resources, FILE_ASSETS, "alpine_tiles.tile_2600_1202")
    assert "tile_2600_1202.tif: GDAL cannot read it as a raster" in file_errors(broken)["alpine_tiles.tile_2600_1202"]
    assert len([p for p, _ in server.faults.requests if p.endswith("tile_2600_1202.tif")]) == 1  # not retried
    assert tick(instance, mapterhorn_source_merge_sensor, resources) == ["alpine_tiles"]
    assert run(instance, resources, SOURCE_ASSETS, "alpine_tiles").success
    report = json.loads((resources["mapterhorn_sources"].root / "merged" / "alpine_tiles" / "report.json").read_text())
    assert [(f["key"], f["step"], f["transient"]) for f in report["failed_files"]] == [("alpine_tiles.tile_2600_1202", "download", False)]
    assert report["failed_files"][0]["url"].endswith("/alpine_tiles/tile_2600_1202.tif")


def test_a_ranged_run_carries_every_file_and_one_failure_stays_its_own(pipeline, instance, storage_root):
    """One run (one process) over all five files on the pool: the broken alpine file fails alone, the
    four others are materialized and merged, and the failed one is named everywhere a user looks."""
    _, resources = pipeline
    ticks = []
    keys = tick(instance, mapterhorn_file_list_sensor, resources, ticks=ticks)
    (request,) = ticks[0].run_requests  # five new files: one ranged run request
    assert (request.tags[ASSET_PARTITION_RANGE_START_TAG], request.tags[ASSET_PARTITION_RANGE_END_TAG]) == (keys[0], keys[-1])
    result = run(instance, resources, FILE_ASSETS, None, tags=request.tags)
    assert result.success
    assert [e.event_type_value for e in result.all_events].count("STEP_START") == 1  # one step carried every file
    broken = "alpine_tiles.tile_2600_1202"
    assert materialized(result) == set(keys) - {broken}  # one materialization per file done
    assert "GDAL cannot read it as a raster" in file_errors(result)[broken]  # it failed verifying its download
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.metadata["files_checked"].value == 5 and broken in check.metadata["refused"].value
    assert check.metadata["refused_by_step"].value == {"download": 1}
    # Per run: one planned materialization event for the range, one check; per file: one materialization (no per-step events).
    counts = [e.event_type_value for e in result.all_events]
    assert (counts.count("ASSET_MATERIALIZATION"), counts.count("ASSET_CHECK_EVALUATION"), counts.count("ASSET_OBSERVATION")) == (4, 1, 1)
    catalog = json.loads((storage_root / "stac" / "mapterhorn-cogs" / "collection.json").read_text())
    assert len([link for link in catalog["links"] if link["rel"] == "item"]) == 4  # the run's items folded into their collection
    assert instance.get_materialized_partitions(dg.AssetKey("mapterhorn_cog")) == set(keys) - {broken}

    assert sorted(tick(instance, mapterhorn_source_merge_sensor, resources)) == ["alpine_tiles", "lowland_grids"]
    for source in ("alpine_tiles", "lowland_grids"):
        assert run(instance, resources, SOURCE_ASSETS, source).success
    listing = subprocess.run(["tar", "tf", str(storage_root / "tar-store" / "alpine_tiles.tar")], capture_output=True, text=True).stdout.split()
    assert listing[4:] == ["files/tile_2600_1200.tif", "files/tile_2600_1201.tif"]
    status = read_table(storage_root / "tables" / "mapterhorn_file_status" / "alpine_tiles.parquet")
    assert list(status["status"]) == ["done", "done", "failed"] and status["key"].iloc[2] == broken
    assert status["step"].iloc[2] == "download" and status["url"].iloc[2].endswith("/alpine_tiles/tile_2600_1202.tif")
    assert "GDAL cannot read it as a raster" in status["error"].iloc[2] and list(status["cogs"]) == [1, 1, 0]
    assert list(status["steps_done"]) == ["download,unpacked,georeferenced,cog,bounds,polygon"] * 2 + [""]  # the per-step status
    (alpine,) = [r.asset_materialization for r in instance.fetch_materializations(dg.AssetKey("mapterhorn_file_status"), limit=10).records
                 if r.asset_materialization.partition == "alpine_tiles"]
    assert (alpine.metadata["files_done"].value, alpine.metadata["files_failed"].value, alpine.metadata["dagster/row_count"].value) == (2, 1, 3)
    report = instance.fetch_materializations(dg.AssetKey("mapterhorn_bounds_csv"), limit=10).records
    named = [r.data["key"] for rec in report for r in rec.asset_materialization.metadata["failed"].value.records]
    assert named == [broken]
