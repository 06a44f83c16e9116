"""The janitor: corrupt storage six ways, check finds each, clean + the repair runs fix each."""


import dagster as dg
import numpy as np
from upath import UPath

from gnt_assets.core.packed_tensors import open_packed, write_packed
from gnt_assets.io_managers.mmap_tensors import tensor_folder
from gnt_assets.mining.dataset import ASSET_KEY
from gnt_assets.mining.exports import description
from gnt_assets.mining.janitor_checks import janitor, janitor_repair_sensor
from gnt_assets.mining.regions import region_path
from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets_tests.mining_tests import training_fixtures as fx

PARTITIONS = ["ZAF|2020", "NAM|2020", "ZAF|2021", "NAM|2021"]


def run_janitor(instance, resources, mode):
    result = janitor.execute_in_process(
        run_config={"ops": {"janitor_sweep": {"config": {"mode": mode}}}},
        instance=instance,
        resources={"storage": resources["storage"], "hpc": resources["hpc"], "drive": resources["drive"]},
        raise_on_error=False,
    )
    if result.success:
        return result, result.output_for_node("janitor_sweep")
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    return result, failure.metadata


def alerts_sent(instance, webhook) -> list[dict]:
    """What the shared alert sensor posts to the loopback webhook for this test."""
    url, received = webhook
    with dg.build_sensor_context(instance=instance, resources={"alerts": AlertSinksResource(webhook_url=url, start_from="beginning")}) as context:
        check_failure_alert_sensor(context)
    return [body["alert"] for body in received]


def corrupt(storage_root: UPath, hpc_root: UPath) -> None:
    # 1. delete a tile: ZAF|2020 republished without its first tile.
    index = open_packed(tensor_folder(storage_root, ASSET_KEY, "ZAF|2020"))
    records = np.array(index.memmap()[1:])
    rows = {k: v[1:] for k, v in index.rows.items() if k not in ("offset", "crc32")}
    write_packed(index.folder, index.fields, {f.name: records[f.name] for f in index.fields}, rows, index.attrs)
    # 2. truncate the packed file of NAM|2020.
    index = open_packed(tensor_folder(storage_root, ASSET_KEY, "NAM|2020"))
    with open(index.data_path.path, "r+b") as handle:
        handle.truncate(index.data_bytes // 2)
    # 3. an orphan: tiles for a partition Dagster never materialized, and a stray file in a good folder.
    orphan = tensor_folder(storage_root, ASSET_KEY, "ZAF|1999")
    orphan.mkdir(parents=True)
    (orphan / "index.json").write_text("{}")
    (tensor_folder(storage_root, ASSET_KEY, "NAM|2021") / "tensors-stray.bin").write_bytes(b"x" * 10)
    # 4. remove the zarr shard under the cluster tiles of ZAF|2021 (the fixture's region is one shard).
    (region_path(storage_root, "ZAF", "2021") / "reflectance" / "c" / "0" / "0" / "0").unlink()
    # 5. alter the target copy of NAM|2021 (same size, different bytes).
    index = open_packed(tensor_folder(storage_root, ASSET_KEY, "NAM|2021"))
    target = hpc_root / "NAM" / "2021" / index.data_file
    target.write_bytes(b"\0" * index.data_bytes)
    # 6. leave an export file on Drive for ZAF|2020, whose region was written and verified.
    leftover = UPath(storage_root) / "local" / "drive" / "landsat_mining" / f"{description('ZAF', 'a' * 64, 2020)}-0000000000-0000000000.tif"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.write_bytes(b"II*\0")


def test_check_finds_each_corruption_and_clean_plus_backfill_repairs_it(storage_root, tmp_path, instance, webhook):
    hpc_root = UPath(tmp_path) / "hpc"
    resources = fx.mining_ii_resources(storage_root, hpc_root)
    fx.materialize_pipeline(instance, resources, PARTITIONS)
    result, output = run_janitor(instance, resources, "check")
    assert result.success and output == {"findings": 0}

    corrupt(storage_root, hpc_root)
    result, metadata = run_janitor(instance, resources, "check")
    assert not result.success
    found = {(r.data["stage"], r.data["partition"], r.data["problem"]) for r in metadata["table"].value.records}
    problems = "\n".join(f"{s} {p} {m}" for s, p, m in sorted(found))
    assert f"tiles ZAF|2020 tile ({fx.IX0}, {fx.IY0}) of cluster aaaaaaaa is missing from the index" in problems
    assert "tiles NAM|2020" in problems and "truncated" in problems
    assert "orphan ZAF|1999 training tiles no materialized partition owns" in problems
    assert "orphan NAM|2021 file in a tiles folder that its index does not name" in problems
    assert f"region ZAF|2021 tile ({fx.IX0 + 1}, {fx.IY0}): zarr chunks missing" in problems
    assert "transfer NAM|2021" in problems and "differs from the source" in problems
    assert "drive ZAF|2020 export file still on Drive after its region was written" in problems
    # The failed check run reaches the alert sinks through the shared alert sensor.
    janitor_alerts = [a for a in alerts_sent(instance, webhook) if a["kind"] == "run_failure" and a["job"] == "janitor"]
    assert len(janitor_alerts) == 1 and janitor_alerts[0]["run_id"] == result.run_id
    # Check mode changes nothing.
    assert tensor_folder(storage_root, ASSET_KEY, "ZAF|1999").exists()

    result, output = run_janitor(instance, resources, "clean")
    assert result.success
    assert output["rematerialize"] == {
        "landsat_exports": [], "landsat_regions": ["ZAF|2021"],
        "mining_training_tiles": ["NAM|2020", "ZAF|2020"], "mining_hpc_transfer": ["NAM|2021"],
    }
    assert not tensor_folder(storage_root, ASSET_KEY, "ZAF|1999").exists()
    assert not (tensor_folder(storage_root, ASSET_KEY, "NAM|2021") / "tensors-stray.bin").exists()
    # Broken outputs are gone, so the per-partition checks now fail too until the backfill.
    assert not tensor_folder(storage_root, ASSET_KEY, "ZAF|2020").exists()
    assert not (hpc_root / "NAM" / "2021").exists()
    assert resources["drive"].list_files("LANDSAT_C02_T1_L2_ZAF_") == []  # the region was verified, so it went
    assert region_path(storage_root, "ZAF", "2021").exists()  # a region is repaired in place, never deleted
    # The repair sensor turns the clean run's report into the backfill runs, each from the demoted asset down.
    definitions = dg.Definitions(
        assets=[*fx.STANDINS, mining_training_tiles, mining_hpc_transfer], sensors=[janitor_repair_sensor], resources=resources
    )
    tick = janitor_repair_sensor(dg.build_sensor_context(instance=instance, definitions=definitions))
    requested = {
        (r.partition_key, tuple(sorted(k.to_user_string() for k in r.asset_selection))) for r in tick.run_requests
    }
    assert requested == {
        ("ZAF|2021", ("landsat_regions", "mining_hpc_transfer", "mining_training_tiles")),
        ("ZAF|2020", ("mining_hpc_transfer", "mining_training_tiles")),
        ("NAM|2020", ("mining_hpc_transfer", "mining_training_tiles")),
        ("NAM|2021", ("mining_hpc_transfer",)),
    }
    again = janitor_repair_sensor(dg.build_sensor_context(instance=instance, definitions=definitions, cursor=tick.cursor))
    assert again.run_requests == []  # each clean run is repaired once
    for partition, selection in sorted(requested):
        fx.materialize_pipeline(instance, resources, [partition], selection=list(selection))
    result, output = run_janitor(instance, resources, "check")
    assert result.success and output == {"findings": 0}
