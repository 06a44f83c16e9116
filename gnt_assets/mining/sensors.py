"""gee_export_sensor: the seed's status checker. Polls submitted Earth Engine tasks, resubmits FAILED or
CANCELLED ones up to a limit, submits queued exports as slots free under the in-flight limit, and requests the
download run when every export of a partition completed."""

import json
from dataclasses import replace

import dagster as dg

from gnt_assets.mining.assets import landsat_regions
from gnt_assets.mining.exports import (
    ACTIVE,
    DONE,
    FAILED_STATES,
    QUEUED,
    ExportError,
    active_tasks,
    ledger_paths,
    partition_state,
    read_ledger,
    with_state,
    write_ledger,
)
from gnt_assets.mining.resources import EarthEngineResource
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.storage import StorageResource

MAX_ATTEMPTS = 3  # the seed's MAX_RETRIES


def poll_ledger(records: list, earthengine: EarthEngineResource, free: int, max_attempts: int = MAX_ATTEMPTS) -> tuple[list, list[str], int]:
    """Updated records, a log line per change and the free slots left: poll open tasks, resubmit failures below
    the limit and submit queued exports while slots are free (a task with the same description is reused)."""
    notes = []
    for i, record in enumerate(records):
        if record.route != "drive" or record.state == DONE or record.downloaded:
            continue
        if record.state in ACTIVE:
            record = with_state(record, earthengine.status(record.task_id))
            free += record.state not in ACTIVE
        retry = record.state in FAILED_STATES and record.attempts < max_attempts
        if (retry or record.state == QUEUED) and free > 0:
            if retry:
                notes.append(f"{record.spec.description}: {record.state} ({record.errors[-1] if record.errors else ''}); resubmitting")
                record = replace(record, attempts=record.attempts + 1)
            try:
                task = None if retry else earthengine.find_task(record.spec.description)
                record = with_state(record, task or earthengine.submit(record.spec))
            except ExportError as error:  # refused: counts as a failed attempt, with Earth Engine's text
                record = replace(record, state="FAILED", errors=[*record.errors, str(error)])
            free -= record.state in ACTIVE
        records[i] = record
    return records, notes, free


@dg.sensor(asset_selection=[landsat_regions], minimum_interval_seconds=120, default_status=dg.DefaultSensorStatus.RUNNING)
def gee_export_sensor(context: dg.SensorEvaluationContext, storage: StorageResource, earthengine: EarthEngineResource,
                      alerts: AlertSinksResource) -> dg.SensorResult:
    """Polls the export tasks of every country-year; requests ``landsat_regions`` once all completed and reports
    partitions whose exports failed ``MAX_ATTEMPTS`` times with the Earth Engine error text."""
    cursor = json.loads(context.cursor or "{}")  # partition -> "requested:<attempts>" or "failed:<attempts>"
    requests = []
    ledgers = {path: read_ledger(path) for path in ledger_paths(storage.root_path)}  # each read once per tick
    free = earthengine.max_in_flight - sum(active_tasks(records) for records in ledgers.values())
    for ledger, records in ledgers.items():
        country, year = ledger.parent.name, ledger.stem
        partition = f"{country}|{year}"
        if not records or all(r.downloaded for r in records):
            continue
        records, notes, free = poll_ledger(records, earthengine, free)
        write_ledger(ledger, records)
        for note in notes:
            context.log.warning(f"{partition}: {note}")
        state = partition_state(records, MAX_ATTEMPTS)
        mark = f"{state}:{sum(r.attempts for r in records)}"
        if cursor.get(partition) == mark or state == "running":
            continue
        cursor[partition] = mark
        if state == "complete":
            key = dg.MultiPartitionKey({"country": country, "year": year})
            requests.append(dg.RunRequest(partition_key=key, run_key=f"landsat_regions:{partition}:{mark}"))
        else:
            failed = [f"{r.spec.description}: {r.errors[-1] if r.errors else r.state}" for r in records if r.state in FAILED_STATES]
            alerts.send({"text": f"mining exports {partition} failed {MAX_ATTEMPTS} times: {'; '.join(failed)}",
                         "partition": partition, "asset": "landsat_exports"}, log=context.log)
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))
