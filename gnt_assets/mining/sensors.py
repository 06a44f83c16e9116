"""gee_export_sensor: the seed's status checker. Polls submitted Earth Engine tasks, resubmits FAILED or
CANCELLED ones up to a limit, submits queued exports as slots free under the in-flight limit, and requests the
download run when every export of a partition completed."""

import hashlib
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
    next_attempt,
    partition_state,
    read_ledger,
    with_state,
    write_ledger,
)
from gnt_assets.mining.jobs import RUN_TAGS
from gnt_assets.mining.resources import EarthEngineResource
from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.storage import StorageResource

MAX_ATTEMPTS = 3  # the seed's MAX_RETRIES


def poll_ledger(records: list, earthengine: EarthEngineResource, free: int, max_attempts: int = MAX_ATTEMPTS,
                tasks: dict | None = None) -> tuple[list, list[str], int]:
    """Updated records, a log line per change and the free slots left: poll open tasks, resubmit failures below
    the limit as a new attempt (a new description, so no old task is revived) and submit queued exports while
    slots are free. ``tasks`` (description -> task, one listing per tick) finds a queued export's task submitted
    before its record was written; without it the listing is taken once, when first needed. A changed record is
    replaced by a new one, never mutated, so the caller can compare against a shallow copy."""
    notes = []
    for i, record in enumerate(records):
        if record.route != "drive" or record.state == DONE or record.downloaded:
            continue
        if record.state in ACTIVE:
            record = with_state(record, earthengine.status(record.task_id))
            free += record.state not in ACTIVE
        retry = record.state in FAILED_STATES and record.tries < max_attempts
        if (retry or record.state == QUEUED) and free > 0:
            if retry:
                notes.append(f"{record.spec.description}: {record.state} ({record.errors[-1] if record.errors else ''}); "
                             f"resubmitting as attempt {record.attempts + 1}")
                record = replace(next_attempt(record), state=QUEUED)
            try:
                if tasks is None:
                    tasks = earthengine.task_index()
                task = tasks.get(record.spec.description)
                record = with_state(record, task or earthengine.submit(record.spec))
            except ExportError as error:  # refused: counts as a failed attempt, with Earth Engine's text
                record = replace(record, state="FAILED", errors=[*record.errors, str(error)])
            free -= record.state in ACTIVE
        records[i] = record
    return records, notes, free


def save_changes(ledger, before: list, after: list) -> bool:
    """Write the ledger only if a record changed; a record marked downloaded on disk meanwhile (the region step
    runs while the sensor polls) is kept as it is on disk, never undone from this tick's snapshot."""
    if before == after:
        return False
    on_disk = {r.spec.description: r for r in read_ledger(ledger)}
    merged = [on_disk[r.spec.description] if r.spec.description in on_disk and on_disk[r.spec.description].downloaded else r for r in after]
    write_ledger(ledger, merged)
    return True


class _LazyTasks:
    """description -> task from one listing, taken on first use."""

    def __init__(self, earthengine: EarthEngineResource) -> None:
        self._earthengine, self._index = earthengine, None

    def get(self, name: str):
        if self._index is None:
            self._index = self._earthengine.task_index()
        return self._index.get(name)


def _partition(ledger) -> tuple[str, str, str]:
    country, year = ledger.parent.name, ledger.stem
    return country, year, f"{country}|{year}"


def _report_broken(context, alerts, cursor: dict, partition: str, error: Exception) -> None:
    """A partition whose ledger or tasks fail this tick: logged every tick, alerted once per distinct error."""
    text = f"{type(error).__name__}: {error}"
    context.log.error(f"{partition}: export polling failed, other partitions go on: {text}")
    mark = "error:" + hashlib.sha256(text.encode()).hexdigest()[:12]
    if cursor.get(partition) != mark:
        cursor[partition] = mark
        alerts.send({"text": f"mining exports {partition}: polling failed: {text}", "partition": partition,
                     "asset": "landsat_exports"}, log=context.log)


CHAIN = [landsat_regions.key, mining_training_tiles.key, mining_hpc_transfer.key]  # what follows completed exports

mining_region_job = dg.define_asset_job(
    "mining_region_job",
    selection=dg.AssetSelection.assets(*CHAIN),
    tags=RUN_TAGS,
    description="Downloads a country-year's completed Earth Engine exports into its zarr region, then builds the training "
                "tiles and copies them to the HPC target.",
)


@dg.sensor(
    job=mining_region_job,
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 2 minutes: polls the Earth Engine export tasks of every country-year, resubmits failed ones up to "
                "3 attempts, submits queued exports as slots free, and starts the region run once a country-year's "
                "exports have all completed or failed for good.",
)
def gee_export_sensor(context: dg.SensorEvaluationContext, storage: StorageResource, earthengine: EarthEngineResource,
                      alerts: AlertSinksResource) -> dg.SensorResult:
    """Polls the export tasks of every country-year; requests ``landsat_regions`` once all completed and reports
    partitions whose exports failed ``MAX_ATTEMPTS`` times with the Earth Engine error text. The run also makes the
    training tiles and their HPC copy, so a backfill of ``landsat_exports`` alone ends with verified tiles on the target. A partition whose ledger
    cannot be read or whose polling raises is reported (log every tick, alert once) and the tick goes on."""
    cursor = json.loads(context.cursor or "{}")  # partition -> "requested:<attempts>", "failed:<attempts>" or "error:<hash>"
    requests = []
    ledgers = {}
    for path in ledger_paths(storage.root_path):  # each read once per tick
        try:
            ledgers[path] = read_ledger(path)
        except Exception as error:  # a torn or foreign ledger file is this partition's problem only
            _report_broken(context, alerts, cursor, _partition(path)[2], error)
    free = earthengine.max_in_flight - sum(active_tasks(records) for records in ledgers.values())
    tasks = _LazyTasks(earthengine)  # one listing of Earth Engine's tasks per tick, taken only if a queued export needs it
    for ledger, records in ledgers.items():
        country, year, partition = _partition(ledger)
        if not records or all(r.downloaded for r in records):
            continue
        try:
            before = list(records)  # poll_ledger replaces changed records, never mutates one: a shallow copy suffices
            records, notes, free = poll_ledger(records, earthengine, free, tasks=tasks)
            save_changes(ledger, before, records)
        except Exception as error:  # one partition's failure never stops the tick for the others
            _report_broken(context, alerts, cursor, partition, error)
            continue
        for note in notes:
            context.log.warning(f"{partition}: {note}")
        state = partition_state(records, MAX_ATTEMPTS)
        mark = f"{state}:{sum(r.attempts for r in records)}"
        if cursor.get(partition) == mark or state == "running":
            continue
        cursor[partition] = mark
        if state in ("complete", "partial"):  # failed clusters are skipped by the region step and named there
            key = dg.MultiPartitionKey({"country": country, "year": year})
            requests.append(dg.RunRequest(partition_key=key, run_key=f"landsat_regions:{partition}:{mark}", asset_selection=CHAIN))
        if state in ("partial", "failed"):
            failed = [f"{r.spec.description}: {r.errors[-1] if r.errors else r.state}" for r in records if r.state in FAILED_STATES]
            alerts.send({"text": f"mining exports {partition}: {len(failed)} failed {MAX_ATTEMPTS} times: {'; '.join(failed)}"
                                 + ("; the region is written without them (reset them to redo)" if state == "partial" else ""),
                         "partition": partition, "asset": "landsat_exports"}, log=context.log)
    idle = None if requests else (f"no country-year newly ready for its region run ({len(ledgers)} polled, "
                                  f"{earthengine.max_in_flight - free} export tasks in flight)")
    return dg.SensorResult(run_requests=requests, skip_reason=idle, cursor=json.dumps(cursor, sort_keys=True))
