"""gee_export_sensor with build_sensor_context: polling, a FAILED task resubmitted, a partition failed for good."""

from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.exports import ledger_path, read_ledger
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
    records = {r.spec.description: r for r in read_ledger(ledger_path(storage_root, "NAM", 2021))}
    assert records[failing].attempts == 2 and records[failing].state == "COMPLETED"
    assert "memory capacity exceeded" in records[failing].errors[0]
    assert [str(r.partition_key) for r in requests] == ["NAM|2021"]
    assert not sensor_tick(instance, resources, cursor).run_requests  # requested once


def test_partition_reported_failed_after_three_attempts(storage_root, instance, capfd):
    probe = mining_resources(storage_root)
    failing = _submit(storage_root, probe)[0].spec.description
    resources = mining_resources(storage_root, fail_descriptions=[failing], fail_attempts=99)
    cursor = None
    for _ in range(8):
        result = sensor_tick(instance, resources, cursor)
        assert not result.run_requests
        cursor = result.cursor
    record = {r.spec.description: r for r in read_ledger(ledger_path(storage_root, "NAM", 2021))}[failing]
    assert record.attempts == 3 and record.state == "FAILED"
    assert '"NAM|2021": "failed:' in cursor
    logged = capfd.readouterr().err
    assert "gnt alert: mining exports NAM|2021 failed 3 times" in logged and "memory capacity exceeded" in logged


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
