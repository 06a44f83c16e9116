"""Mining I end to end through Dagster on the local Earth Engine and Drive."""

import dagster as dg
import numpy as np
from pandas import read_csv

from gnt_assets.core.worldgrid import world_tile
from gnt_assets.core.zarr_regions import open_store
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.mining.exports import export_spec, ledger_path, read_ledger
from gnt_assets.mining.local.samples import scene_gaps
from gnt_assets.mining.pipeline import direct_path, staging_folder
from gnt_assets.mining.regions import region_path, tile_array
from gnt_assets_tests.mining_tests.mining_fixtures import materialize, mining_resources, sensor_tick


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def exported(instance, resources, country: str, year: str = "2020") -> str | None:
    """Polygons, the country's clusters and one year's exports, the export sensor ticked until every task is
    done; the sensor's cursor."""
    materialize(instance, resources, ["mine_polygons"])
    materialize(instance, resources, ["mining_clusters"], country)
    materialize(instance, resources, ["landsat_exports"], f"{country}|{year}")
    cursor = None
    for _ in range(3):
        cursor = sensor_tick(instance, resources, cursor).cursor
    return cursor


def test_polygons_to_regions_with_sensor(storage_root, instance):
    resources = mining_resources(storage_root)
    polygons = materialize(instance, resources, ["mine_polygons"])
    meta = polygons.asset_materializations_for_node("mine_polygons")[0].metadata
    assert meta["rejected"].value == 4 and meta["made_valid"].value == 1
    assert set(instance.get_dynamic_partitions("mining_country")) == {"BWA", "CHL", "FJI", "NAM", "ZAF"}
    assert _checks(polygons) == {"polygons_rejected_rows": False}

    clusters = materialize(instance, resources, ["mining_clusters"], "BWA")
    assert _checks(clusters) == {"clusters_partition_the_mines": True}
    table = read_table(storage_root / "tables" / "mining_clusters" / "BWA.parquet")

    exports = materialize(instance, resources, ["landsat_exports"], "BWA|2020")
    records = read_ledger(ledger_path(storage_root, "BWA", "2020"))
    assert {r.route for r in records} == {"direct", "drive"}
    assert len(records) == len(table)
    assert _checks(exports) == {"exports_one_task_per_cluster": True}

    # re-running never submits twice: tasks are found by description
    again = materialize(instance, resources, ["landsat_exports"], "BWA|2020")
    meta = again.asset_materializations_for_node("landsat_exports")[0].metadata
    assert meta["submitted"].value == 0 and meta["reused"].value == meta["drive"].value

    first = sensor_tick(instance, resources)
    assert not first.run_requests  # READY -> RUNNING
    second = sensor_tick(instance, resources, first.cursor)
    assert [str(r.partition_key) for r in second.run_requests] == ["BWA|2020"]
    chain = [k.to_user_string() for k in second.run_requests[0].asset_selection]  # tiles and HPC copy follow by themselves
    assert chain == ["landsat_regions", "mining_training_tiles", "mining_hpc_transfer"]
    assert not sensor_tick(instance, resources, second.cursor).run_requests  # requested once

    regions = materialize(instance, resources, ["landsat_regions"], "BWA|2020")
    assert all(_checks(regions).values()), _checks(regions)
    meta = regions.asset_materializations_for_node("landsat_regions")[0].metadata
    assert meta["files"].value > 0 and "cluster_rgb" in meta
    assert not list((storage_root / "local" / "drive" / "landsat_mining").glob("*BWA*"))
    direct = [r for r in records if r.route == "direct"]  # their GeoTIFFs go once the region marks them written
    assert meta["direct_files_deleted"].value == len(direct)
    assert not any(direct_path(storage_root, "BWA", "2020", r.spec.description).exists() for r in direct)
    store = open_store(region_path(storage_root, "BWA", "2020"))
    assert store["reflectance"].dtype == np.float32 and store.odc.geobox is not None
    ix, iy = table["tiles"].iloc[0][0]
    tile = tile_array(region_path(storage_root, "BWA", "2020"), int(ix), int(iy))
    assert tile.shape == (7, 64, 64) and np.isfinite(tile).any()
    gaps = scene_gaps(world_tile(int(ix), int(iy)), 2020)  # masked in the composite: NaN in the region, never 0
    assert gaps.any() and np.isnan(tile[:, gaps]).all() and np.isfinite(tile[:, ~gaps]).all()

    # a truncated Drive file fails its cluster only: named in the error, kept on Drive; the other clusters are written
    materialize(instance, resources, ["landsat_exports"], "BWA|2019")
    cursor = None
    for _ in range(3):
        cursor = sensor_tick(instance, resources, cursor).cursor
    drive = storage_root / "local" / "drive" / "landsat_mining"
    shards = sorted(drive.glob("*BWA*2019*"))
    broken, stale = shards[0], shards[-1]
    broken.write_bytes(broken.read_bytes()[:300])
    staged = staging_folder(storage_root, "BWA", 2019) / stale.name  # a truncated copy left by an earlier run
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(stale.read_bytes()[:300])
    failed = materialize(instance, resources, ["landsat_regions"], "BWA|2019", raise_on_error=False)
    assert not failed.success
    error = failed.get_step_failure_events()[0].event_specific_data.error.message
    assert f"{broken.name}: not a readable GeoTIFF" in error
    assert sorted(drive.glob("*BWA*2019*")) == [p for p in shards if p.name.startswith(broken.name.rsplit("-", 2)[0])]
    records = read_ledger(ledger_path(storage_root, "BWA", "2019"))
    assert sum(not r.downloaded for r in records) == 1 and sum(r.downloaded for r in records) == len(records) - 1

    status = materialize(instance, resources, ["mining_export_status"])
    table = read_csv((storage_root / "mining" / "status.csv").open())
    assert table.set_index("partition").loc["BWA|2020", "downloaded"] == len(read_ledger(ledger_path(storage_root, "BWA", "2020")))
    assert table.set_index("partition").loc["BWA|2019", "COMPLETED"] == 1
    assert status.asset_materializations_for_node("mining_export_status")[0].metadata["status"].value.records


def test_polygon_file_as_geoparquet_and_without_crs(storage_root, instance, tmp_path):
    from gnt_assets.mining.local.samples import sample_polygons
    from gnt_assets_tests.mining_tests.mining_fixtures import ASSETS

    resources = mining_resources(storage_root)

    def run(path):
        config = {"ops": {"mine_polygons": {"config": {"path": str(path)}}}}
        return dg.materialize(ASSETS, selection=["mine_polygons"], instance=instance, resources=resources, run_config=config, raise_on_error=False)

    good = tmp_path / "mines.parquet"
    sample_polygons().to_parquet(good)
    result = run(good)
    assert result.success
    assert result.asset_materializations_for_node("mine_polygons")[0].metadata["rejected"].value == 4
    no_crs = tmp_path / "no_crs.parquet"
    sample_polygons().set_crs(None, allow_override=True).to_parquet(no_crs)
    failed = run(no_crs)
    assert not failed.success
    assert f"{no_crs}: the file has no CRS" in failed.get_step_failure_events()[0].event_specific_data.error.to_string()
    # a country added by hand (UI backfill) that the polygon file does not have fails naming it and the known ones
    run(good)
    instance.add_dynamic_partitions("mining_country", ["ATA"])
    unknown = materialize(instance, resources, ["mining_clusters"], "ATA", raise_on_error=False)
    assert not unknown.success
    message = unknown.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "country ATA: no valid mine polygons with this ISO3 code; known: ['BWA', 'CHL', 'FJI', 'NAM', 'ZAF']" in message


def test_local_earth_engine_writes_zero_for_masked_pixels_unless_the_request_unmasks(storage_root, monkeypatch):
    import geopandas as gpd
    import shapely
    from rasterio.io import MemoryFile

    from gnt_assets.mining import exports
    from gnt_assets.mining.clusters import cluster_country
    from gnt_assets.mining.local import earthengine as local_ee

    mines = gpd.GeoDataFrame({"mine_id": [0], "ISO3_CODE": ["BWA"]}, geometry=[shapely.box(25.36, -24.62, 25.37, -24.61)], crs=4326)
    spec = export_spec(next(cluster_country(mines, "BWA", 0.005).itertuples()), 2020)
    gaps = scene_gaps(spec.geobox, 2020)
    client = mining_resources(storage_root)["earthengine"]

    def pixels(data):
        with MemoryFile(data) as memory, memory.open() as raster:
            return raster.read(), raster.nodata

    values, tag = pixels(client.compute_pixels(spec))
    assert (values[:, gaps] == exports.NODATA).all() and (values[:, ~gaps] != exports.NODATA).all() and tag is None
    task = client.submit(spec)
    client.status(task.task_id), client.status(task.task_id)
    values, tag = pixels(next(client.drive_path().glob(f"{spec.description}*.tif")).read_bytes())
    assert tag == exports.NODATA and (values[:, gaps] == exports.NODATA).all()

    monkeypatch.setattr(local_ee, "export_request", lambda spec: {})  # a request that states no nodata
    values, tag = pixels(client.compute_pixels(spec))
    assert (values[:, gaps] == 0).all() and tag is None  # what Earth Engine does: masked pixels become 0


def test_cluster_across_the_antimeridian_is_exported_as_two_pieces_into_its_world_tiles(storage_root, instance):
    resources = mining_resources(storage_root)
    materialize(instance, resources, ["mine_polygons"])
    materialize(instance, resources, ["mining_clusters"], "FJI")
    table = read_table(storage_root / "tables" / "mining_clusters" / "FJI.parquet")
    crossing = table[table["crosses_antimeridian"]].iloc[0]
    exports = materialize(instance, resources, ["landsat_exports"], "FJI|2020")
    assert _checks(exports) == {"exports_one_task_per_cluster": True}
    pieces = sorted(r.spec.description for r in read_ledger(ledger_path(storage_root, "FJI", "2020")) if r.spec.cluster_id == crossing.cluster_id)
    assert [p.split("_")[-2] for p in pieces] == ["E", "W"] and all(p.endswith("_a1") for p in pieces)
    cursor = None
    for _ in range(3):
        cursor = sensor_tick(instance, resources, cursor).cursor
    regions = materialize(instance, resources, ["landsat_regions"], "FJI|2020")
    assert all(_checks(regions).values()), _checks(regions)
    path = region_path(storage_root, "FJI", "2020")
    sides = {int(ix) for ix, _ in crossing.tiles}
    assert min(sides) == 0 and max(sides) == 20872
    for ix, iy in crossing.tiles:  # both sides of 180 hold the cluster's pixels, masked ones NaN
        tile = tile_array(path, int(ix), int(iy))
        gaps = scene_gaps(world_tile(int(ix), int(iy)), 2020)
        assert np.isfinite(tile[:, ~gaps]).all() and np.isnan(tile[:, gaps]).all()


def test_janitor_reset_after_a_deleted_chunk_and_the_repair_restore_it_byte_identical(storage_root, instance):
    from gnt_assets.mining.janitor import region_findings, reset_for_missing_chunks

    resources = mining_resources(storage_root)
    cursor = exported(instance, resources, "NAM")
    materialize(instance, resources, ["landsat_regions"], "NAM|2020")
    table = read_table(storage_root / "tables" / "mining_clusters" / "NAM.parquet")
    store = region_path(storage_root, "NAM", "2020")
    chunks = {p: p.read_bytes() for p in (store / "reflectance" / "c").rglob("*") if p.is_file()}
    victim = sorted(chunks)[len(chunks) // 2]
    victim.unlink()

    findings = region_findings(storage_root, "NAM|2020", table)
    assert findings and all("zarr chunks missing" in f.problem for f in findings)  # every cluster tile in the lost shard
    reset = reset_for_missing_chunks(storage_root, findings)
    assert list(reset) == ["NAM|2020"] and all(d.endswith("_a2") for d in reset["NAM|2020"])
    materialize(instance, resources, ["landsat_exports"], "NAM|2020")  # direct ones recomputed, Drive ones submitted
    requests = []
    for _ in range(3):
        result = sensor_tick(instance, resources, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
    assert [str(r.partition_key) for r in requests] == ["NAM|2020"]
    materialize(instance, resources, ["landsat_regions"], "NAM|2020")
    assert not region_findings(storage_root, "NAM|2020", table)
    assert {p: p.read_bytes() for p in (store / "reflectance" / "c").rglob("*") if p.is_file()} == chunks  # byte-identical


def test_regions_through_google_drive_on_a_shared_drive_keep_a_file_whose_md5_differs(storage_root, instance):
    """The real Drive client against the loopback Drive: a damaged download is not used and its file not deleted."""
    from gnt_assets.mining.local.drive_server import drive_server
    from gnt_assets.mining.resources import GoogleDrive

    resources = mining_resources(storage_root)
    exported(instance, resources, "BWA")
    folder = storage_root / "local" / "drive" / "landsat_mining"
    shards = sorted(p.name for p in folder.glob("*BWA*"))
    damaged = shards[0]
    with drive_server(storage_root / "local" / "drive", shared_drive_id="0AsharedGNT", corrupt={damaged}) as server:
        drive = GoogleDrive(client_id=server.client_id, client_secret=server.client_secret, refresh_token=server.refresh_token,
                            token_uri=server.token_uri, api_endpoint=server.api_endpoint, shared_drive_id="0AsharedGNT")
        failed = materialize(instance, {**resources, "drive": drive}, ["landsat_regions"], "BWA|2020", raise_on_error=False)
        assert not failed.success
        error = failed.get_step_failure_events()[0].event_specific_data.error.message
        assert f"Drive file {damaged}" in error and "downloaded MD5" in error
        assert sorted(p.name for p in folder.glob("*BWA*")) == [n for n in shards if n.split("-")[0] == damaged.split("-")[0]]
        damaged_record = next(r for r in read_ledger(ledger_path(storage_root, "BWA", "2020")) if damaged.startswith(r.spec.description))
        assert not damaged_record.downloaded
        server.corrupt.clear()
        regions = materialize(instance, {**resources, "drive": drive}, ["landsat_regions"], "BWA|2020")
        assert all(_checks(regions).values()), _checks(regions)
    assert not list(folder.glob("*BWA*")) and all(r.downloaded for r in read_ledger(ledger_path(storage_root, "BWA", "2020")))
