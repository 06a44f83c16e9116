"""Alerts for failed asset checks and failed runs, each sent exactly once and never blocked (DESIGN section 5).

Dagster OSS records check evaluations and run failures but notifies nobody. Each tick this sensor

1. reads only failures after its position: failed rows of the instance's asset-check executions
   table (``BATCH`` at most) and ``RUN_FAILURE`` events, both in storage-id order;
2. coalesces the check failures of one asset in one run into one digest;
3. queues the new alerts and moves its position in one write to the instance's key-value table
   (``core.alerts.AlertLedger``), so the position never depends on the tick finishing;
4. offers each queued alert to each sink (log, webhook) that still owes it, recording each outcome
   before the next send; a failing sink is retried with exponential backoff, then the alert becomes
   a dead letter; a slow sink defers the rest of the queue to the next tick instead of running over
   the tick's time limit.

On its first tick the sensor starts from the latest failure recorded (nothing from history) unless
the alerts resource says ``start_from="beginning"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import dagster as dg
import sqlalchemy as db
from dagster._core.storage.event_log.base import EventLogCursor
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._serdes import deserialize_value

from gnt_assets.core.alerts import AlertLedger, CheckFailure, KeyValueStore, check_digests, run_failure_alert
from gnt_assets.resources.alerts import AlertSinksResource

BATCH = 10_000
RUN_BATCH = 500
FAILED = "FAILED"


class InstanceKeyValueStore(KeyValueStore):
    """The instance's key-value table (SQLite or PostgreSQL): durable, shared by every daemon."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.storage = instance.run_storage

    def get(self, keys: set[str]) -> Mapping[str, str]:
        return self.storage.get_cursor_values(keys) if keys else {}

    def set(self, pairs: Mapping[str, str]) -> None:
        # Dagster's set_cursor_values inserts all pairs, and on a duplicate key updates only the keys
        # that already exist: new and existing keys are written separately, new ones first
        existing = set(self.get(set(pairs)))
        new = {k: v for k, v in pairs.items() if k not in existing}
        if new:
            self.storage.set_cursor_values(new)
        if existing:
            self.storage.set_cursor_values({k: v for k, v in pairs.items() if k in existing})


def _sql_event_log(instance: dg.DagsterInstance) -> SqlEventLogStorage:
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise TypeError(f"check_failure_alert_sensor needs a SQL event log (SQLite or PostgreSQL), not {type(storage).__name__}")
    return storage


def latest_check_failure_id(instance: dg.DagsterInstance) -> int:
    table = AssetCheckExecutionsTable
    with _sql_event_log(instance).index_connection() as conn:
        value = conn.execute(db.select(db.func.max(table.c.evaluation_event_storage_id))).scalar()
    return int(value or 0)


def check_failures_after(instance: dg.DagsterInstance, after: int, limit: int = BATCH) -> list[CheckFailure]:
    """Failed check evaluations with a storage id above ``after``, oldest first (only failures are read).

    Severity is read from each stored evaluation's text; only the first evaluation of each asset, run
    and check is decoded, for its description (decoding all of 10,000 costs seconds per tick)."""
    table = AssetCheckExecutionsTable
    query = (
        db.select(table.c.evaluation_event_storage_id, table.c.run_id, table.c.asset_key, table.c.check_name,
                  table.c.partition, table.c.evaluation_event)
        .where(table.c.execution_status == FAILED, table.c.evaluation_event_storage_id > after)
        .order_by(table.c.evaluation_event_storage_id.asc())
        .limit(limit)
    )
    with _sql_event_log(instance).index_connection() as conn:
        rows = conn.execute(query).fetchall()
    failures = []
    described: set[tuple[str, str, str]] = set()
    asset_names: dict[str, str] = {}
    for storage_id, run_id, asset_key, check_name, partition, event in rows:
        asset = asset_names.get(asset_key) or asset_names.setdefault(asset_key, dg.AssetKey.from_db_string(asset_key).to_user_string())
        description, metadata = "", {}
        if (asset, run_id, check_name) not in described:
            described.add((asset, run_id, check_name))
            evaluation = deserialize_value(event).dagster_event.event_specific_data
            description = evaluation.description or ""
            metadata = {str(k): str(v.value) for k, v in (evaluation.metadata or {}).items() if not str(k).startswith("preview")}
        failures.append(CheckFailure(
            storage_id=int(storage_id),
            run_id=run_id or "",
            asset=asset,
            check=check_name,
            partition=partition,
            severity="WARN" if '"AssetCheckSeverity.WARN"' in event else "ERROR",
            description=description,
            metadata=metadata,
        ))
    return failures


def _run_failures(instance: dg.DagsterInstance, after: int | None, limit: int, ascending: bool):
    cursor = EventLogCursor.from_storage_id(after).to_string() if after else None
    return instance.fetch_run_status_changes(
        dg.DagsterEventType.RUN_FAILURE, limit=limit, cursor=cursor, ascending=ascending
    ).records


def run_failure_alerts_after(instance: dg.DagsterInstance, after: int) -> tuple[list[dict], int]:
    alerts = []
    for record in _run_failures(instance, after, RUN_BATCH, ascending=True):
        entry = record.event_log_entry
        run = instance.get_run_by_id(record.run_id)
        partition = run.tags.get("dagster/partition") if run else None
        message = entry.dagster_event.message or entry.user_message or ""
        alerts.append(run_failure_alert(record.run_id, entry.job_name or "run", partition, message))
        after = record.storage_id
    return alerts, after


def _partitions_of_runs(instance: dg.DagsterInstance, digests: list[dict]) -> None:
    """A run-level partition (a run of one partition whose check evaluations carry none)."""
    for digest in digests:
        if not digest["partitions"] and digest["run_id"]:
            run = instance.get_run_by_id(digest["run_id"])
            partition = run.tags.get("dagster/partition") if run else None
            if partition:
                digest["partition"] = partition
                digest["partitions"] = [partition]
                digest["text"] = digest["text"].replace(f"in run {digest['run_id']}", f"in run {digest['run_id']} on {partition}", 1)


def start_position(instance: dg.DagsterInstance, start_from: str) -> dict:
    if start_from == "beginning":
        return {"check": 0, "run": 0}
    latest_run = _run_failures(instance, None, 1, ascending=False)
    return {"check": latest_check_failure_id(instance), "run": latest_run[0].storage_id if latest_run else 0}


def alert_tick(instance: dg.DagsterInstance, alerts: AlertSinksResource, log) -> str:
    """One tick: read new failures, queue them, deliver what is due. Returns what happened, in words."""
    sinks = alerts.sinks(log)
    ledger = AlertLedger(InstanceKeyValueStore(instance))
    position = ledger.cursor()
    if position is None:
        position = start_position(instance, alerts.start_from)
        ledger.enqueue([], [s.name for s in sinks], position)
        if alerts.start_from == "now":
            return (f"first tick: alerting on failures after check evaluation {position['check']} and run event "
                    f"{position['run']} (set start_from='beginning' on the alerts resource for history)")
    failures = check_failures_after(instance, position["check"])
    digests = check_digests(failures)
    _partitions_of_runs(instance, digests)
    run_alerts, run_after = run_failure_alerts_after(instance, position["run"])
    new_position = {"check": failures[-1].storage_id if failures else position["check"], "run": run_after}
    queued = ledger.enqueue(digests + run_alerts, [s.name for s in sinks], new_position)
    report = ledger.deliver(sinks, alerts.policy())
    parts = [f"read {len(failures)} failed check evaluation(s) and {len(run_alerts)} failed run(s)",
             f"queued {queued} alert(s)", f"sent {len(report.sent)}"]
    if report.retrying:
        parts.append(f"{len(report.retrying)} to retry with backoff")
    if report.deferred:
        parts.append(f"{report.deferred} deferred to the next tick")
    dead = ledger.dead_letters()
    if dead:
        parts.append(f"{len(dead)} dead letter(s), latest {dead[-1]['id']}: {next(iter(dead[-1]['sinks'].values()), '')}")
    return "; ".join(parts)


@dg.sensor(
    name="check_failure_alert_sensor",
    description=(
        "Sends each failed asset check (one digest per asset and run) and each failed run once to the log and "
        "the configured webhook; undeliverable alerts are listed as dead letters in the skip message."
    ),
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertSinksResource) -> dg.SkipReason:
    summary = alert_tick(context.instance, alerts, context.log)
    context.update_cursor(json.dumps(AlertLedger(InstanceKeyValueStore(context.instance)).cursor()))
    return dg.SkipReason(f"{summary}; this sensor requests no runs")
