"""What the Dagster instance remembers about conus404_daily days: which failed for good, which are usable.

A day's fate is its latest finished run that targeted it: a failed run (after
its step retries; a failed blocking check fails the run too) puts the day in
the failure report, a later successful run takes it out again.
"""

from __future__ import annotations

from datetime import date, datetime, timezone

import dagster as dg

from gnt_assets.conus404.failures import DayFailure
from gnt_assets.partitions import conus404_day

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]


def _run_days(run: dg.DagsterRun) -> list[str]:
    tags = run.tags
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start, end = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if start and end:
        return conus404_day.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
    return []


def planning_run_ids(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int = 100_000) -> set[str]:
    """Runs that planned to materialize ``key`` (whatever launched them: UI, backfill, sensor, tests)."""
    run_ids: set[str] = set()
    cursor = None
    while len(run_ids) < limit:
        page = instance.fetch_planned_materializations(key, limit=1000, cursor=cursor)
        run_ids.update(record.run_id for record in page.records)
        if not page.has_more:
            break
        cursor = page.cursor
    return run_ids


def latest_runs(instance: dg.DagsterInstance, key: dg.AssetKey) -> dict[str, dg.RunRecord]:
    """Day -> the newest finished run that planned ``key`` for that day."""
    run_ids = planning_run_ids(instance, key)
    latest: dict[str, dg.RunRecord] = {}
    if not run_ids:
        return latest
    records = instance.get_run_records(dg.RunsFilter(run_ids=list(run_ids), statuses=FINISHED),
                                       order_by="update_timestamp", ascending=False)
    for record in records:
        for day in _run_days(record.dagster_run):
            latest.setdefault(day, record)
    return latest


def _error_text(instance: dg.DagsterInstance, run_id: str) -> str:
    texts = []
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}):
        event = entry.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            texts.append(error.message.strip() if error else "step failed")
        elif not event.event_specific_data.passed:
            evaluation = event.event_specific_data
            finding = evaluation.metadata.get("finding")
            texts.append(f"check {evaluation.check_name} failed: {finding.value if finding else ''}".strip())
    return " | ".join(texts) or "run failed"


def failed_days(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[DayFailure]:
    failures = []
    for day, record in sorted(latest_runs(instance, key).items()):
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            continue
        ended = datetime.fromtimestamp(record.end_time or record.update_timestamp.timestamp(), tz=timezone.utc)
        failures.append(DayFailure(day=day, error=_error_text(instance, record.dagster_run.run_id),
                                   failed_at=ended.isoformat(timespec="seconds"), run_id=record.dagster_run.run_id))
    return failures


def good_days(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[date]:
    """Materialized days whose latest run succeeded (so every blocking check passed)."""
    bad = {f.day for f in failed_days(instance, key)}
    return sorted(date.fromisoformat(d) for d in instance.get_materialized_partitions(key) - bad)
