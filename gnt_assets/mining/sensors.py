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
    TaskListing,
    active_tasks,
    ledger_paths,
    next_attempt,
    partition_state,
    read_snapshot,
    read_summary,
    summary_in_flight,
    summary_state,
    update_ledger,
    upgrade_ledger,
    with_state,
)
from gnt_assets.mining.jobs import RUN_TAGS
from gnt_assets.mining.resources import EarthEngineResource
from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.storage import StorageResource

MAX_ATTEMPTS = 3  # the seed's MAX_RETRIES


class TickTasks:
    """One listing of Earth Engine's tasks, taken when first needed and shared by every ledger of a tick (or run):
    task states for polling and the look-up by description before submitting."""

    def __init__(self, earthengine: EarthEngineResource) -> None:
        self._earthengine, self._listing, self._error = earthengine, None, None

    @property
    def listing(self) -> TaskListing:
        if self._error is not None:  # a failed listing is not retried for every partition of the tick
            raise self._error
        if self._listing is None:
            try:
                self._listing = self._earthengine.task_listing()
            except Exception as error:
                self._error = error
                raise
        return self._listing


def poll_ledger(records: list, earthengine: EarthEngineResource, free: int, max_attempts: int = MAX_ATTEMPTS,
                tasks: TickTasks | None = None) -> tuple[list, list[str], int]:
    """Updated records, a log line per change and the free slots left: poll open tasks, resubmit failures below
    the limit as a new attempt (a new description, so no old task is revived) and submit queued exports while
    slots are free. States and the look-up of a queued export's task (submitted before its record was written)
    come from ``tasks``, one listing per tick; a task missing from it is asked for alone. A changed record is
    replaced by a new one, never mutated, so the caller can compare against a shallow copy."""
    tasks = tasks or TickTasks(earthengine)
    notes = []
    for i, record in enumerate(records):
        if record.route != "drive" or record.state == DONE or record.downloaded:
            continue
        if record.state in ACTIVE:
            task = tasks.listing.by_id.get(record.task_id)
            record = with_state(record, task or earthengine.status(record.task_id))
            free += record.state not in ACTIVE
        retry = record.state in FAILED_STATES and record.tries < max_attempts
        if (retry or record.state == QUEUED) and free > 0:
            if retry:
                notes.append(f"{record.spec.description}: {record.state} ({record.errors[-1] if record.errors else ''}); "
                             f"resubmitting as attempt {record.attempts + 1}")
                record = replace(next_attempt(record), state=QUEUED)
            try:
                task = tasks.listing.newest.get(record.spec.description)
                record = with_state(record, task or earthengine.submit(record.spec))
            except ExportError as error:  # refused: counts as a failed attempt, with Earth Engine's text
                record = replace(record, state="FAILED", errors=[*record.errors, str(error)])
            free -= record.state in ACTIVE
        records[i] = record
    return records, notes, free


def _quiet(summary: dict | None, mark: str | None, tasks: TickTasks) -> bool:
    """Polling the ledger would change nothing and it needs no region request: Earth Engine reports each of its
    in-flight tasks in the state its summary records, and it is still running or its state was already acted on
    (exports waiting for a slot are the caller's to check: see :func:`_waiting`)."""
    if summary is None:
        return False
    active = [(task_id, state) for route, task_id, state, _ in summary["open"] if route == "drive" and state in ACTIVE]
    by_id = tasks.listing.by_id if active else {}
    if not all(task_id in by_id and by_id[task_id].state == state for task_id, state in active):
        return False
    state = summary_state(summary, MAX_ATTEMPTS)
    return state == "running" or summary["downloaded"] == summary["records"] or mark == f"{state}:{summary['attempts']}"


def _waiting(summary: dict) -> int:
    """Drive exports that wait for a free slot: queued, or failed and due for resubmission."""
    return sum(route == "drive" and (state == QUEUED or (state in FAILED_STATES and tries < MAX_ATTEMPTS))
               for route, _, state, tries in summary["open"])


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
    cannot be read or whose polling raises is reported (log every tick, alert once) and the tick goes on.

    A tick costs one listing of Earth Engine's tasks and the first line (the summary) of every ledger; it parses
    only the ledgers with a task that changed state, exports waiting for a free slot or a state to act on, and
    writes only the records it changed, never over another writer's (:func:`update_ledger`)."""
    cursor = json.loads(context.cursor or "{}")  # partition -> "requested:<attempts>", "failed:<attempts>" or "error:<hash>"
    requests = []
    tasks = TickTasks(earthengine)  # one listing of Earth Engine's tasks per tick, taken only if a ledger needs it
    ledgers, quiet = {}, {}
    for path in ledger_paths(storage.root_path):
        partition = _partition(path)[2]
        try:
            summary = read_summary(path)
            if _quiet(summary, cursor.get(partition), tasks):
                quiet[path] = summary  # not read, unless it has exports waiting and a slot is free
            else:
                ledgers[path] = read_snapshot(path)
        except Exception as error:  # a torn or foreign ledger file is this partition's problem only
            _report_broken(context, alerts, cursor, partition, error)
    free = (earthengine.max_in_flight - sum(active_tasks(snapshot.records) for snapshot in ledgers.values())
            - sum(summary_in_flight(summary) for summary in quiet.values()))
    for ledger in sorted([*ledgers, *quiet]):
        country, year, partition = _partition(ledger)
        try:
            if ledger in quiet:
                if not (_waiting(quiet[ledger]) and free > 0):
                    continue
                ledgers[ledger] = read_snapshot(ledger)
            snapshot = ledgers[ledger]
            # poll_ledger replaces changed records, never mutates one: the snapshot's records stay as read
            records, notes, free = poll_ledger(list(snapshot.records), earthengine, free, tasks=tasks)
            records = update_ledger(ledger, snapshot.records, records, theirs_win=True, snapshot=snapshot)  # only what changed
            upgrade_ledger(ledger, snapshot)  # an older ledger without a summary line gets one (if no one wrote it)
        except Exception as error:  # one partition's failure never stops the tick for the others
            _report_broken(context, alerts, cursor, partition, error)
            continue
        for note in notes:
            context.log.warning(f"{partition}: {note}")
        state = partition_state(records, MAX_ATTEMPTS)
        mark = f"{state}:{sum(r.attempts for r in records)}"
        if records and not all(r.downloaded for r in records) and cursor.get(partition) != mark and state != "running":
            cursor[partition] = mark
            if state in ("complete", "partial"):  # failed clusters are skipped by the region step and named there
                key = dg.MultiPartitionKey({"country": country, "year": year})
                requests.append(dg.RunRequest(partition_key=key, run_key=f"landsat_regions:{partition}:{mark}", asset_selection=CHAIN))
            if state in ("partial", "failed"):
                failed = [f"{r.spec.description}: {r.errors[-1] if r.errors else r.state}" for r in records if r.state in FAILED_STATES]
                alerts.send({"text": f"mining exports {partition}: {len(failed)} failed {MAX_ATTEMPTS} times: {'; '.join(failed)}"
                                     + ("; the region is written without them (reset them to redo)" if state == "partial" else ""),
                             "partition": partition, "asset": "landsat_exports"}, log=context.log)
    summarized = sum(1 for path in quiet if path not in ledgers)
    idle = None if requests else (f"no country-year newly ready for its region run ({len(ledgers)} ledgers read, {summarized} "
                                  f"quiet ones only summarized; {earthengine.max_in_flight - free} export tasks in flight)")
    return dg.SensorResult(run_requests=requests, skip_reason=idle, cursor=json.dumps(cursor, sort_keys=True))
