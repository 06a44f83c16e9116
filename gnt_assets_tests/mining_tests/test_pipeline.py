"""Mining I end to end through Dagster on the local Earth Engine and Drive."""

import numpy as np

from gnt_assets.core.zarr_regions import open_store
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.mining.exports import ledger_path, read_ledger
from gnt_assets.mining.regions import region_path, tile_array

from .mining_fixtures import materialize, mining_resources, sensor_tick


def _checks(result):
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


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
    assert not sensor_tick(instance, resources, second.cursor).run_requests  # requested once

    regions = materialize(instance, resources, ["landsat_regions"], "BWA|2020")
    assert all(_checks(regions).values()), _checks(regions)
    meta = regions.asset_materializations_for_node("landsat_regions")[0].metadata
    assert meta["files"].value > 0 and "cluster_rgb" in meta
    assert not list((storage_root / "local" / "drive" / "landsat_mining").glob("*BWA*"))
    store = open_store(region_path(storage_root, "BWA", "2020"))
    assert store["reflectance"].dtype == np.float32 and store.odc.geobox is not None
    ix, iy = table["tiles"].iloc[0][0]
    tile = tile_array(region_path(storage_root, "BWA", "2020"), int(ix), int(iy))
    assert tile.shape == (7, 64, 64) and np.isfinite(tile).any()
