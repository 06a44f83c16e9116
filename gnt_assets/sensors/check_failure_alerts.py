"""Alerts for failed asset checks and failed runs, each sent exactly once (DESIGN section 5).

Dagster OSS records check evaluations and run failures but notifies nobody. This
sensor reads both from the event log after its cursor (one storage id per event
type) and hands each failure to the ``alerts`` resource: the log always, a
webhook when ``GNT_ALERT_WEBHOOK_URL`` is set. The cursor only advances past
alerts that were delivered, so a webhook outage delays alerts instead of losing them.
"""

from __future__ import annotations

import json

import dagster as dg

from gnt_assets.resources.alerts import AlertSinksResource

BATCH = 200


def _run_partition(instance: dg.DagsterInstance, run_id: str) -> str | None:
    run = instance.get_run_by_id(run_id)
    return run.tags.get("dagster/partition") if run else None


def check_failure_alert(record: dg.EventLogRecord, instance: dg.DagsterInstance) -> dict | None:
    evaluation = record.event_log_entry.dagster_event.event_specific_data
    if evaluation.passed:
        return None
    severity = evaluation.severity.value if evaluation.severity else "ERROR"
    description = evaluation.description or ""
    metadata = {k: str(v.value) for k, v in (evaluation.metadata or {}).items() if not str(k).startswith("preview")}
    asset = evaluation.asset_key.to_user_string()
    partition = evaluation.partition or _run_partition(instance, record.run_id)
    where = f"{asset} [{partition}]" if partition else asset
    return {
        "kind": "asset_check",
        "severity": severity,
        "asset": asset,
        "partition": partition,
        "check": evaluation.check_name,
        "run_id": record.run_id,
        "text": f"{severity}: check {evaluation.check_name} failed on {where}. {description}".strip(),
        "metadata": metadata,
    }


def run_failure_alert(record: dg.EventLogRecord, instance: dg.DagsterInstance) -> dict:
    entry = record.event_log_entry
    message = entry.dagster_event.message or entry.user_message or ""
    job = entry.job_name or "run"
    return {
        "kind": "run_failure",
        "severity": "ERROR",
        "job": job,
        "partition": _run_partition(instance, record.run_id),
        "run_id": record.run_id,
        "text": f"ERROR: run {record.run_id} of {job} failed. {message}".strip(),
    }


ALERT_SOURCES = {
    "check": (dg.DagsterEventType.ASSET_CHECK_EVALUATION, check_failure_alert),
    "run": (dg.DagsterEventType.RUN_FAILURE, run_failure_alert),
}


@dg.sensor(
    name="check_failure_alert_sensor",
    description="Sends every failed asset check and failed run once to the configured alert sinks.",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def check_failure_alert_sensor(context: dg.SensorEvaluationContext, alerts: AlertSinksResource) -> dg.SkipReason:
    cursor = json.loads(context.cursor) if context.cursor else {}
    sent = 0
    for name, (event_type, to_alert) in ALERT_SOURCES.items():
        after = cursor.get(name)
        records = context.instance.get_event_records(
            dg.EventRecordsFilter(event_type=event_type, after_cursor=after), limit=BATCH, ascending=True
        )
        for record in records:
            alert = to_alert(record, context.instance)
            if alert is not None:
                alerts.send(alert, log=context.log)
                sent += 1
            cursor[name] = record.storage_id
            context.update_cursor(json.dumps(cursor))
    return dg.SkipReason(f"sent {sent} alert(s); this sensor requests no runs")
