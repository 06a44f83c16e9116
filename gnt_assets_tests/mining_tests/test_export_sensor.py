"""gee_export_sensor with build_sensor_context: polling, a FAILED task resubmitted, a partition failed for good."""

import json

import pytest

from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.downloads import ExportFileError
from gnt_assets.mining.exports import ExportError, base_of, ledger_path, read_ledger
from gnt_assets.mining.local.samples import sample_polygons
from gnt_assets.mining.pipeline import submit_exports
from gnt_assets.mining.polygons import validate_polygons
from gnt_assets_tests.mining_tests.mining_fixtures import mining_resources, sensor_tick


def _submit(root, resources, country="NAM", year=2021):
    clusters = cluster_country(validate_polygons(sample_polygons(), "sample").valid, country, 0.005)
    records, counts, errors = submit_exports(root, resources["earthengine"], clusters, country, year)
    assert not errors and counts["drive"] > 0
    return [r for r in records if r.route == "drive"]


def test_failed_task_is_resubmitted_then_download_requested(storage_root, instance):
    probe = mining_resources(storage_root)
    drive_records = _submit(storage_root, probe)
    failing = drive_records[0].spec.description
    resources = mining_resources(storage_root, fail_descriptions=[failing], fail_attempts=1)

    cursor, requests = None, []
    for _ in range(4):  # READY -> RUNNING -> FAILED (resubmitted) -> RUNNING -> COMPLETED
        result = sensor_tick(instance, resources, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
    cluster = drive_records[0].spec.cluster_id
    record = next(r for r in read_ledger(ledger_path(storage_root, "NAM", 2021)) if r.spec.cluster_id == cluster)
    assert record.attempts == 2 and record.state == "COMPLETED" and record.spec.description == failing.replace("_a1", "_a2")
    assert "memory capacity exceeded" in record.errors[0]
    tasks = [json.loads(p.read_text()) for p in (storage_root / "local" / "earthengine" / "tasks").glob("*.json")]
    assert sorted(t["state"] for t in tasks if t["description"].startswith(failing[:-3])) == ["COMPLETED", "FAILED"]  # a new task
    assert [str(r.partition_key) for r in requests] == ["NAM|2021"]
    assert not sensor_tick(instance, resources, cursor).run_requests  # requested once


def test_cluster_failed_three_times_is_reported_and_skipped_not_blocking_then_reset_redoes_it(storage_root, instance, capfd):
    from gnt_assets.mining.pipeline import write_regions

    probe = mining_resources(storage_root)
    first = _submit(storage_root, probe)[0]
    failing, cluster = base_of(first.spec.description), first.spec.cluster_id
    resources = mining_resources(storage_root, fail_descriptions=[failing], fail_attempts=99)
    cursor, requests = None, []
    for _ in range(8):
        result = sensor_tick(instance, resources, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
    record = next(r for r in read_ledger(ledger_path(storage_root, "NAM", 2021)) if r.spec.cluster_id == cluster)
    assert record.attempts == 3 and record.state == "FAILED" and record.spec.description.endswith("_a3")
    assert [str(r.partition_key) for r in requests] == ["NAM|2021"]  # the others are done: the region goes on
    assert '"NAM|2021": "partial:' in cursor
    logged = capfd.readouterr().err
    assert "gnt alert: mining exports NAM|2021: 1 failed 3 times" in logged and "memory capacity exceeded" in logged
    clusters = cluster_country(validate_polygons(sample_polygons(), "sample").valid, "NAM", 0.005)
    result = write_regions(storage_root, resources["drive"], clusters, "NAM", 2021)
    assert result["skipped_failed"] == [record.spec.description] and cluster not in result["written"]
    with pytest.raises(ExportFileError, match="exports not completed yet"):
        write_regions(storage_root, resources["drive"], clusters, "NAM", 2021, skip_failed=False)

    # redo by design: the reset returns it to "to export" as attempt 4 with a fresh budget; the sensor submits it
    records, counts, _ = submit_exports(storage_root, probe["earthengine"], clusters, "NAM", 2021, reset=[cluster[:8]])
    record = next(r for r in records if r.spec.cluster_id == cluster)
    assert counts["reset"] == 1 and record.attempts == 4 and record.tries == 1 and not record.downloaded
    for _ in range(3):
        result = sensor_tick(instance, probe, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
    record = next(r for r in read_ledger(ledger_path(storage_root, "NAM", 2021)) if r.spec.cluster_id == cluster)
    assert record.state == "COMPLETED" and record.spec.description.endswith("_a4")
    assert [str(r.partition_key) for r in requests] == ["NAM|2021", "NAM|2021"]  # the region again, now with it
    result = write_regions(storage_root, probe["drive"], clusters, "NAM", 2021)
    assert not result["skipped_failed"] and not result["errors"] and cluster in result["written"]
    with pytest.raises(ExportError, match="reset: no export of cluster 00000000"):
        submit_exports(storage_root, probe["earthengine"], clusters, "NAM", 2021, reset=["00000000"])


def test_lost_ledger_never_revives_a_completed_task_whose_files_are_gone(storage_root, instance):
    from gnt_assets.mining.pipeline import write_regions

    resources = mining_resources(storage_root)
    clusters = cluster_country(validate_polygons(sample_polygons(), "sample").valid, "NAM", 0.005)
    _submit(storage_root, resources)
    cursor = None
    for _ in range(3):
        cursor = sensor_tick(instance, resources, cursor).cursor
    write_regions(storage_root, resources["drive"], clusters, "NAM", 2021)  # downloaded, Drive files deleted
    ledger_path(storage_root, "NAM", 2021).unlink()
    records, counts, _ = submit_exports(storage_root, resources["earthengine"], clusters, "NAM", 2021, drive=resources["drive"])
    drive = [r for r in records if r.route == "drive"]
    assert counts["reused"] == 0 and counts["submitted"] == len(drive)
    assert all(r.spec.description.endswith("_a2") and r.state == "READY" for r in drive)  # new attempts, not the old tasks
    again, counts, _ = submit_exports(storage_root, resources["earthengine"], clusters, "NAM", 2021, drive=resources["drive"])
    assert counts["submitted"] == 0 and [r.task_id for r in again] == [r.task_id for r in records]


def test_no_more_than_max_in_flight_tasks_queued_ones_submitted_by_the_sensor(storage_root, instance):
    from gnt_assets.mining.exports import ACTIVE

    resources = mining_resources(storage_root, max_in_flight=1)
    clusters = cluster_country(validate_polygons(sample_polygons(), "sample").valid, "NAM", 0.005)
    records, counts, _ = submit_exports(storage_root, resources["earthengine"], clusters, "NAM", 2021)
    drive = [r for r in records if r.route == "drive"]
    assert len(drive) >= 2 and counts["submitted"] == 1 and counts["queued"] == len(drive) - 1
    cursor, requests = None, []
    for _ in range(3 * len(drive) + 1):
        result = sensor_tick(instance, resources, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
        ledger = read_ledger(ledger_path(storage_root, "NAM", 2021))
        assert sum(1 for r in ledger if r.task_id and r.state in ACTIVE) <= 1
    assert [str(r.partition_key) for r in requests] == ["NAM|2021"]
    tasks = list((storage_root / "local" / "earthengine" / "tasks").glob("*.json"))
    assert len(tasks) == len(drive)  # each export submitted exactly once


def test_one_partition_failing_inside_a_tick_is_reported_and_the_others_go_on(storage_root, instance, capfd):
    from dataclasses import replace

    from gnt_assets.mining.exports import write_ledger

    resources = mining_resources(storage_root)
    _submit(storage_root, resources, "NAM", 2021)
    _submit(storage_root, resources, "BWA", 2021)
    broken = ledger_path(storage_root, "BWA", 2021)  # a task Earth Engine does not know: status() raises
    write_ledger(broken, [replace(r, task_id="GONE") if r.route == "drive" else r for r in read_ledger(broken)])
    torn = ledger_path(storage_root, "ZAF", 2021)
    torn.parent.mkdir(parents=True, exist_ok=True)
    torn.write_text('[{"spec": ')  # a torn ledger
    cursor, requests = None, []
    for _ in range(3):
        result = sensor_tick(instance, resources, cursor)
        cursor, requests = result.cursor, requests + list(result.run_requests)
    assert [str(r.partition_key) for r in requests] == ["NAM|2021"]  # polled to completion despite the others
    logged = capfd.readouterr().err
    assert "BWA|2021: export polling failed, other partitions go on: KeyError" in logged and "no task GONE" in logged
    assert "ZAF|2021: export polling failed" in logged and "JSONDecodeError" in logged
    assert logged.count("gnt alert: mining exports BWA|2021: polling failed") == 1  # alerted once, logged each tick


def test_sensor_writes_only_changed_ledgers_and_never_undoes_a_downloaded_mark(storage_root, instance):
    from copy import deepcopy
    from dataclasses import replace

    from gnt_assets.mining.exports import write_ledger
    from gnt_assets.mining.sensors import save_changes

    resources = mining_resources(storage_root)
    _submit(storage_root, resources)
    ledger = ledger_path(storage_root, "NAM", 2021)
    snapshot = read_ledger(ledger)
    assert not save_changes(ledger, deepcopy(snapshot), snapshot)  # nothing changed: not written
    # meanwhile the region step marks one record downloaded; the sensor's change to another must not undo it
    on_disk = read_ledger(ledger)
    on_disk[0] = replace(on_disk[0], downloaded=True)
    write_ledger(ledger, on_disk)
    polled = deepcopy(snapshot)
    polled[1] = replace(polled[1], state="RUNNING")
    assert save_changes(ledger, snapshot, polled)
    after = read_ledger(ledger)
    assert after[0].downloaded and after[1].state == "RUNNING"
