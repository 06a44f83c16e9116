"""What the Dagster instance remembers about conus404_daily days: which failed for good, which are usable.

A day's fate is its latest finished run that targeted it: a failed run (after
its step retries; a failed blocking check fails the run too) puts the day in
the failure report, a later successful run takes it out again. A ranged
(multi_run backfill) run that names its failed days fails only those.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import dagster as dg

from gnt_assets.conus404.failures import DayFailure
from gnt_assets.partitions import conus404_day

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]
NAMED_DAY = re.compile(r"\[(\d{4}-\d{2}-\d{2})\]")  # how conus404_daily names each failed day of a range


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


def run_plans(instance: dg.DagsterInstance, record: dg.RunRecord, key: dg.AssetKey) -> bool:
    """Whether one run planned ``key``: its asset selection, or (a whole job launched without one) its planned
    events. At most one lookup per run however long the asset's history, unlike ``planning_run_ids``."""
    selection = record.dagster_run.asset_selection
    if selection:  # None or empty for a whole job (dg.materialize leaves it empty)
        return key in selection
    planned = instance.get_records_for_run(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=1000)
    return any(r.event_log_entry.dagster_event.asset_key == key for r in planned.records)


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


def _by_day(message: str) -> dict[str, str]:
    """``[day] text; [day] text`` (conus404_daily's ranged failure) -> day -> its own text."""
    marks = list(NAMED_DAY.finditer(message))
    return {m.group(1): message[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(message)].strip(" ;")
            for i, m in enumerate(marks)}


def _run_failure(instance: dg.DagsterInstance, run_id: str) -> tuple[str, dict[str, str]]:
    """The run's error text, and each named day's own error (empty: the whole run failed, one text for all)."""
    steps, checks, per_day = [], [], {}
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.ASSET_CHECK_EVALUATION}):
        event = entry.dagster_event
        if event.event_type == dg.DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            message = error.message.strip() if error else "step failed"
            named = _by_day(message)
            if named:
                for day, text in named.items():
                    for part in text.split("; check "):  # a day failed by checks lists them: each once
                        part = part if part.startswith("check ") or part == text else f"check {part}"
                        if part not in per_day.setdefault(day, []):
                            per_day[day].append(part)
            elif "blocking asset check" not in message:  # the check step's summary: the evaluations say more
                steps.append(message.split(": ", 1)[1] if message.startswith(("dagster.", "Failure:")) else message)
            continue
        evaluation = event.event_specific_data
        if evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR:
            continue
        metadata = evaluation.metadata
        findings = metadata["findings"].value if "findings" in metadata else {}
        days = [d.strip() for d in str(metadata["failed_days"].value if "failed_days" in metadata else "").split(",") if d.strip()]
        if evaluation.partition:
            days = days or [evaluation.partition]
        for day in days:
            finding = findings.get(day) or (metadata["finding"].value if "finding" in metadata else "")
            text = f"check {evaluation.check_name} failed: {finding}".strip()
            if text not in per_day.get(day, []):
                per_day.setdefault(day, []).append(text)
        if not days:
            checks.append(f"check {evaluation.check_name} failed: {metadata['finding'].value if 'finding' in metadata else ''}")
    texts = {day: " | ".join(items) for day, items in per_day.items()}
    return " | ".join(steps + checks) or "run failed", texts


def failed_days(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[DayFailure]:
    failures = []
    explained: dict[str, tuple[str, dict[str, str]]] = {}
    for day, record in sorted(latest_runs(instance, key).items()):
        run = record.dagster_run
        if run.status != dg.DagsterRunStatus.FAILURE:
            continue
        text, per_day = explained.setdefault(run.run_id, _run_failure(instance, run.run_id))
        if per_day and day not in per_day:  # a run that named its failed days: this one succeeded
            continue
        ended = datetime.fromtimestamp(record.end_time or record.update_timestamp.timestamp(), tz=UTC)
        failures.append(DayFailure(day=day, error=per_day.get(day, text), failed_at=ended.isoformat(timespec="seconds"), run_id=run.run_id))
    return failures


def good_days(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[date]:
    """Materialized days whose latest run succeeded (so every blocking check passed)."""
    bad = {f.day for f in failed_days(instance, key)}
    return sorted(date.fromisoformat(d) for d in instance.get_materialized_partitions(key) - bad)


def materialized_since(instance: dg.DagsterInstance, key: dg.AssetKey, after: int | None) -> tuple[set[str], int | None]:
    """Days materialized after the event storage id ``after`` (all, when None), and the newest storage id seen."""
    days: set[str] = set()
    newest, cursor = after, None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
                                               limit=1000, cursor=cursor, ascending=True)
        for record in page.records:
            if record.partition_key:
                days.add(record.partition_key)
            newest = max(newest or 0, record.storage_id)
        if not page.has_more:
            return days, newest
        cursor = page.cursor
