"""gee_export_sensor with build_sensor_context: polling, a FAILED task resubmitted, a partition failed for good."""

import json

import pytest

from gnt_assets.mining.clusters import cluster_country
from gnt_assets.mining.downloads import ExportFileError
from gnt_assets.mining.exports import ExportError, base_of, ledger_path, read_ledger
from gnt_assets.mining.local.earthengine import LocalEarthEngine
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


def test_ledger_update_writes_only_changes_and_never_undoes_another_writers_record(storage_root):
    from dataclasses import replace

    from gnt_assets.mining.exports import ledger_stamp, read_snapshot, update_ledger, write_ledger

    resources = mining_resources(storage_root)
    _submit(storage_root, resources)
    ledger = ledger_path(storage_root, "NAM", 2021)
    read = read_snapshot(ledger)
    snapshot = read.records
    assert update_ledger(ledger, snapshot, list(snapshot), theirs_win=True, snapshot=read) == snapshot
    assert ledger_stamp(ledger) == read.stamp  # nothing changed: not written
    polled = [replace(r, state="RUNNING") if i < 3 else r for i, r in enumerate(snapshot)]
    assert update_ledger(ledger, snapshot, polled, theirs_win=True, snapshot=read) == polled == read_ledger(ledger)  # no race
    read = read_snapshot(ledger)
    snapshot = read.records
    # meanwhile a run marks record 0 downloaded and a reset redoes record 2; the sensor changes 0, 1 and 2
    on_disk = read_ledger(ledger)
    on_disk[0], on_disk[2] = replace(on_disk[0], downloaded=True), replace(on_disk[2], attempts=7)
    write_ledger(ledger, on_disk)
    polled = [replace(r, state="QUEUED") if i < 3 else r for i, r in enumerate(snapshot)]
    after = update_ledger(ledger, snapshot, polled, theirs_win=True, snapshot=read)  # rewritten since: merged, not overwritten
    assert after == read_ledger(ledger)
    assert after[0].downloaded and after[0].state == snapshot[0].state  # the sensor's change lost, the run's kept
    assert after[1].state == "QUEUED" and after[2].attempts == 7 and after[2].state == snapshot[2].state
    # a run's own changes win over the disk (its downloaded mark stands), records it dropped go
    after = update_ledger(ledger, snapshot, [replace(snapshot[2], downloaded=True), *snapshot[3:]])
    assert after[0].downloaded and after[0].attempts == 1 and [r.spec.description for r in after] == [r.spec.description for r in snapshot[2:]]


class _RacingEarthEngine(LocalEarthEngine):
    """The local Earth Engine, with a region run writing downloaded marks while the sensor takes its listing."""

    def task_listing(self):
        listing = super().task_listing()
        for race in RACES:
            race()
        return listing


RACES: list = []


def test_a_downloaded_mark_written_by_a_run_during_the_tick_is_never_undone(storage_root, instance):
    from dataclasses import replace

    from gnt_assets.mining.exports import reset_clusters, update_ledger

    resources = mining_resources(storage_root)
    drive = _submit(storage_root, resources)
    ledger = ledger_path(storage_root, "NAM", 2021)
    sensor_tick(instance, resources)  # READY -> RUNNING
    sensor_tick(instance, resources)  # -> COMPLETED: every drive export done, the region run requested
    done = read_ledger(ledger)
    assert all(r.state == "COMPLETED" for r in done)
    # the janitor resets one cluster (the sensor will submit it) while the region run marks the others downloaded
    reset, _ = reset_clusters(done, [drive[0].spec.cluster_id])
    update_ledger(ledger, done, reset)
    before = read_ledger(ledger)

    def region_run():
        update_ledger(ledger, before, [replace(r, downloaded=True) if r.state == "COMPLETED" else r for r in before])

    RACES[:] = [region_run]
    try:
        racing = {**resources, "earthengine": _RacingEarthEngine(root=str(storage_root), direct_max_bytes=300_000, shard_width=128)}
        sensor_tick(instance, racing)
    finally:
        RACES.clear()
    after = {r.spec.cluster_id: r for r in read_ledger(ledger)}
    assert after[drive[0].spec.cluster_id].state == "READY"  # the sensor's submission is written
    assert all(r.downloaded for c, r in after.items() if c != drive[0].spec.cluster_id)  # and the run's marks stand


def test_a_settled_ledger_is_only_summarized_until_an_export_waits_or_the_cursor_is_lost(storage_root, instance, monkeypatch):
    from gnt_assets.mining import sensors
    from gnt_assets.mining.exports import reset_clusters, update_ledger

    resources = mining_resources(storage_root)
    drive = _submit(storage_root, resources)
    cursor = None
    for _ in range(2):  # READY -> RUNNING -> COMPLETED: the region run is requested
        cursor = sensor_tick(instance, resources, cursor).cursor
    reads = []
    read = sensors.read_snapshot
    monkeypatch.setattr(sensors, "read_snapshot", lambda path: reads.append(path.stem) or read(path))
    result = sensor_tick(instance, resources, cursor)
    assert reads == [] and not result.run_requests and "0 ledgers read, 1 quiet ones only summarized" in result.skip_reason.skip_message
    ledger = ledger_path(storage_root, "NAM", 2021)
    before = read_ledger(ledger)
    update_ledger(ledger, before, reset_clusters(before, [drive[0].spec.cluster_id])[0])  # a reset: it waits for a slot
    cursor = sensor_tick(instance, resources, cursor).cursor
    assert reads == ["2021"] and next(r for r in read_ledger(ledger) if r.spec.cluster_id == drive[0].spec.cluster_id).task_id
    for _ in range(3):
        cursor = sensor_tick(instance, resources, cursor).cursor
    assert sensor_tick(instance, resources, None).run_requests  # a lost cursor: the region requested again


def test_a_ledger_of_the_older_format_is_read_and_given_its_summary_line(storage_root, instance):
    import json

    from gnt_assets.mining.exports import _plain, read_summary

    resources = mining_resources(storage_root)
    _submit(storage_root, resources)
    cursor = None
    for _ in range(2):  # every export completed: nothing left to change
        cursor = sensor_tick(instance, resources, cursor).cursor
    ledger = ledger_path(storage_root, "NAM", 2021)
    records = read_ledger(ledger)
    ledger.write_text(json.dumps([_plain(r) for r in records], indent=1))  # as written before summaries
    assert read_summary(ledger) is None and read_ledger(ledger) == records
    sensor_tick(instance, resources, cursor)
    assert read_summary(ledger)["records"] == len(records) and read_ledger(ledger) == records


def test_ledger_writers_on_an_object_store_never_lose_each_others_records(storage_root, s3_root):
    """No lock reaches other machines: the S3 ledger merges by compare-and-swap, so writers racing on one ledger
    (the sensor and runs on separate services) each keep their change, and a sensor working from an old
    snapshot still yields to a run's mark written since."""
    import threading
    from dataclasses import replace

    from gnt_assets.mining.exports import read_snapshot, update_ledger, write_ledger

    _submit(storage_root, mining_resources(storage_root))
    records = read_ledger(ledger_path(storage_root, "NAM", 2021))
    assert len(records) >= 4
    ledger = ledger_path(s3_root, "NAM", 2021)
    write_ledger(ledger, records)
    start = threading.Barrier(len(records))

    def mark(index: int) -> None:  # each writer its own record, all at once, from the same snapshot
        snapshot = read_snapshot(ledger)
        start.wait()
        update_ledger(ledger, snapshot.records, [replace(r, downloaded=True) if i == index else r for i, r in enumerate(snapshot.records)])

    writers = [threading.Thread(target=mark, args=(i,)) for i in range(len(records))]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    assert all(r.downloaded for r in read_ledger(ledger))  # with a plain overwrite all but one mark would go

    read = read_snapshot(ledger)
    on_disk = read_ledger(ledger)
    write_ledger(ledger, [replace(on_disk[0], attempts=9), *on_disk[1:]])  # a run's change after the sensor's read
    polled = [replace(r, state="QUEUED") if i < 2 else r for i, r in enumerate(read.records)]
    after = update_ledger(ledger, read.records, polled, theirs_win=True, snapshot=read)
    assert after == read_ledger(ledger)
    assert after[0].attempts == 9 and after[0].state == read.records[0].state and after[1].state == "QUEUED"
