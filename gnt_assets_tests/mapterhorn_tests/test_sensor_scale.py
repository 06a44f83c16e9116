"""The file-list sensor at catalog scale: compact cursor, batched adds resumed next tick, ranged run
requests (many files per run, capped per tick), unchanged lists not parsed."""

from __future__ import annotations

import json

import dagster as dg
from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG

from gnt_assets.mapterhorn import sensors
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mapterhorn.sensors import mapterhorn_file_list_sensor, plan_file_list_tick
from gnt_assets.run_monitoring import IN_PROCESS_EXECUTOR


def _list(n: int, start: int = 0) -> bytes:
    return "".join(f"https://h.example/dgm/{i // 1000}/tile_{i}.tif\n" for i in range(start, start + n)).encode()


def test_a_large_list_is_requested_in_capped_batches_with_a_compact_cursor():
    lists, known, cursor, requested = {"big": _list(2_300)}, set(), {}, []
    for _ in range(5):
        plan = plan_file_list_tick(lists, cursor, known, set(), max_files=1_000)
        requested += [key for key, _ in plan["requests"]]
        known |= {key for key, _ in plan["requests"]}
        cursor = plan["cursor"]
        assert len(json.dumps(cursor)) < 200
    assert [len(requested[i : i + 1000]) for i in range(0, 3000, 1000)] == [1000, 1000, 300]
    assert len(set(requested)) == 2_300 and requested[0] == "big.tile_0" and cursor["big"] == {"sha256": cursor["big"]["sha256"], "lines": 2_300, "waiting": 0}


def test_an_unchanged_list_is_not_parsed_and_a_changed_one_reports_removals(monkeypatch):
    lists = {"a": _list(10), "b": _list(5, 100)}
    first = plan_file_list_tick(lists, {}, set(), set(), max_files=100)
    known = {key for key, _ in first["requests"]}
    assert first["new_sources"] == ["a", "b"] and len(known) == 15
    parsed = []
    monkeypatch.setattr(sensors, "parse_file_list", lambda source, text: parsed.append(source) or [])
    again = plan_file_list_tick(lists, first["cursor"], known, {"a", "b"}, max_files=100)
    assert again["requests"] == [] and parsed == [] and again["cursor"] == first["cursor"]
    monkeypatch.undo()
    changed = {"a": _list(9) + b"https://h.example/new/tile_x.tif\n", "b": lists["b"]}
    plan = plan_file_list_tick(changed, first["cursor"], known, {"a", "b"}, max_files=100)
    assert [key for key, _ in plan["requests"]] == ["a.tile_x"] and plan["removed"] == ["a.tile_9"]


def test_the_sensor_adds_partitions_in_batches_and_requests_ranges_resumed_next_tick(tmp_path, instance, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_FILES_PER_TICK", 40)
    catalog = tmp_path / "source-catalog"
    (catalog / "big").mkdir(parents=True)
    (catalog / "big" / "file_list.txt").write_bytes(_list(100))
    resource = MapterhornSourcesResource(work_dir=str(tmp_path), catalog_dir=str(catalog))
    cursor, runs, files = None, [], []
    for _ in range(4):
        before = instance.get_dynamic_partitions("mapterhorn_files")
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mapterhorn_sources": resource}) as context:
            result = mapterhorn_file_list_sensor(context)
        # The sensor adds the tick's file keys itself, in one call: no per-key add request for the daemon to check.
        added = instance.get_dynamic_partitions("mapterhorn_files")[len(before) :]
        assert all(request.partitions_def_name != "mapterhorn_files" for request in result.dynamic_partitions_requests)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        runs.append([int(r.tags["mapterhorn/files"]) for r in result.run_requests])
        files.append(len(added))
        known = instance.get_dynamic_partitions("mapterhorn_files")
        for request in result.run_requests:  # each request is a range of consecutive keys the same tick added
            start, end = known.index(request.tags[ASSET_PARTITION_RANGE_START_TAG]), known.index(request.tags[ASSET_PARTITION_RANGE_END_TAG])
            assert known[start : end + 1] == added[: end - start + 1] and request.partition_key is None
            assert int(request.tags["mapterhorn/files"]) == end - start + 1
            added = added[end - start + 1 :]
        assert added == []
        cursor = result.cursor
    assert files == [40, 40, 20, 0] and runs == [[40], [40], [20], []]  # one ranged run per tick: Dagster resolves each run's range per asset
    assert len(instance.get_dynamic_partitions("mapterhorn_files")) == 100 and len(cursor) < 200


def test_a_tick_whose_cursor_was_never_saved_is_planned_again_with_the_same_run_keys(tmp_path, instance):
    """The sensor adds its keys before the daemon saves the tick: if the daemon dies in between, the next
    tick starts from the old cursor and must still request those files (not take them as done)."""
    catalog = tmp_path / "source-catalog"
    (catalog / "big").mkdir(parents=True)
    (catalog / "big" / "file_list.txt").write_bytes(_list(30))
    resource = MapterhornSourcesResource(work_dir=str(tmp_path), catalog_dir=str(catalog))

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mapterhorn_sources": resource}) as context:
            result = mapterhorn_file_list_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        return result

    settled = tick(None)
    (catalog / "big" / "file_list.txt").write_bytes(_list(50))
    lost = tick(settled.cursor)  # its cursor is never saved
    retried = tick(settled.cursor)
    assert [r.run_key for r in lost.run_requests] == [r.run_key for r in retried.run_requests] and len(retried.run_requests) == 1
    assert retried.run_requests[0].tags["mapterhorn/files"] == "20" and retried.cursor == lost.cursor
    assert len(instance.get_dynamic_partitions("mapterhorn_files")) == 50  # nothing added twice
    assert tick(retried.cursor).run_requests == []


def test_range_run_keys_name_the_range_and_change_with_its_urls():
    (first,) = sensors.range_requests([("s.a", "https://h/a.tif"), ("s.b", "https://h/b.tif")], 10)
    (moved,) = sensors.range_requests([("s.a", "https://h/a.tif"), ("s.b", "https://h/v2/b.tif")], 10)
    assert first.run_key.startswith("s.a..s.b@") and first.run_key != moved.run_key
    assert [len(r.tags) for r in sensors.range_requests([(f"s.{i}", f"u{i}") for i in range(25)], 10)] == [3, 3, 3]


def test_file_assets_are_backfilled_in_ranges_in_one_process():
    from gnt_assets.mapterhorn.assets import FILES_PER_RUN, mapterhorn_cog

    assert mapterhorn_cog.backfill_policy == dg.BackfillPolicy.multi_run(max_partitions_per_run=FILES_PER_RUN)
    assert sensors.mapterhorn_file_job.executor_def is IN_PROCESS_EXECUTOR  # one process per run, sending heartbeats


def test_even_one_worker_runs_the_files_off_the_thread_that_stores_their_events(tmp_path, monkeypatch):
    """With file_workers 1 the chain still runs on a pool thread, so the asset's thread stores one file's event
    while the next file is worked on; outcomes come in list order."""
    import threading

    from gnt_assets.mapterhorn import batch

    threads = []

    def chain(resource, key, inputs, **_):
        threads.append(threading.current_thread().name)
        return batch.FileOutcome(key, "")

    monkeypatch.setattr(batch, "process_file", chain)
    monkeypatch.setattr(batch, "read_sources", lambda resource, keys: {"s": None})
    resource = MapterhornSourcesResource(work_dir=str(tmp_path))
    outcomes = [o.key for o in batch.process_files(resource, ["s.a", "s.b", "s.c"], workers=1)]
    assert outcomes == ["s.a", "s.b", "s.c"] and len(threads) == 3
    assert all(name.startswith("mapterhorn-file") for name in threads) and threading.current_thread().name not in threads
