"""The file-list sensor at catalog scale: compact cursor, batched adds and requests resumed next tick,
unchanged lists not parsed."""

from __future__ import annotations

import json

import dagster as dg

from gnt_assets.mapterhorn import sensors
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mapterhorn.sensors import mapterhorn_file_list_sensor, plan_file_list_tick


def _list(n: int, start: int = 0) -> bytes:
    return "".join(f"https://h.example/dgm/{i // 1000}/tile_{i}.tif\n" for i in range(start, start + n)).encode()


def test_a_large_list_is_requested_in_capped_batches_with_a_compact_cursor():
    lists, known, cursor, requested = {"big": _list(2_300)}, set(), {}, []
    for _ in range(5):
        plan = plan_file_list_tick(lists, cursor, known, set(), max_runs=1_000)
        requested += [key for key, _ in plan["requests"]]
        known |= {key for key, _ in plan["requests"]}
        cursor = plan["cursor"]
        assert len(json.dumps(cursor)) < 200
    assert [len(requested[i : i + 1000]) for i in range(0, 3000, 1000)] == [1000, 1000, 300]
    assert len(set(requested)) == 2_300 and requested[0] == "big.tile_0" and cursor["big"] == {"sha256": cursor["big"]["sha256"], "lines": 2_300, "waiting": 0}


def test_an_unchanged_list_is_not_parsed_and_a_changed_one_reports_removals(monkeypatch):
    lists = {"a": _list(10), "b": _list(5, 100)}
    first = plan_file_list_tick(lists, {}, set(), set(), max_runs=100)
    known = {key for key, _ in first["requests"]}
    assert first["new_sources"] == ["a", "b"] and len(known) == 15
    parsed = []
    monkeypatch.setattr(sensors, "parse_file_list", lambda source, text: parsed.append(source) or [])
    again = plan_file_list_tick(lists, first["cursor"], known, {"a", "b"}, max_runs=100)
    assert again["requests"] == [] and parsed == [] and again["cursor"] == first["cursor"]
    monkeypatch.undo()
    changed = {"a": _list(9) + b"https://h.example/new/tile_x.tif\n", "b": lists["b"]}
    plan = plan_file_list_tick(changed, first["cursor"], known, {"a", "b"}, max_runs=100)
    assert [key for key, _ in plan["requests"]] == ["a.tile_x"] and plan["removed"] == ["a.tile_9"]


def test_the_sensor_adds_partitions_in_batches_and_resumes_next_tick(tmp_path, instance, monkeypatch):
    monkeypatch.setattr(sensors, "MAX_RUNS_PER_TICK", 40)
    catalog = tmp_path / "source-catalog"
    (catalog / "big").mkdir(parents=True)
    (catalog / "big" / "file_list.txt").write_bytes(_list(100))
    resource = MapterhornSourcesResource(work_dir=str(tmp_path), catalog_dir=str(catalog))
    cursor, counts = None, []
    for _ in range(4):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"mapterhorn_sources": resource}) as context:
            result = mapterhorn_file_list_sensor(context)
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        counts.append(len(result.run_requests))
        assert len(result.dynamic_partitions_requests[0].partition_keys) == len(result.run_requests)
        cursor = result.cursor
    assert counts == [40, 40, 20, 0] and len(instance.get_dynamic_partitions("mapterhorn_files")) == 100
    assert len(cursor) < 200
