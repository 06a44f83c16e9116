"""CONUS404 pipeline: hourly source -> daily store (+ summary, quick look) -> analysis-ready copy; failure report."""


from datetime import date, timedelta

import dagster as dg
import numpy as np
import pandas as pd

from gnt_assets.conus404 import analysis_ready as ready
from gnt_assets.conus404 import run_history
from gnt_assets.conus404.aggregation import DailyFields, aggregate_day
from gnt_assets.conus404.daily_store import daily_template, day_dataset, day_objects, day_summary, ensure_store, read_day
from gnt_assets.conus404.day_checks import BlockingChecksFailed, evaluate_written_days
from gnt_assets.conus404.failures import report_document
from gnt_assets.conus404.local import LOCAL_SAMPLE_DAYS, LOCAL_SAMPLE_START
from gnt_assets.conus404.resources import Conus404Rules, Conus404Source
from gnt_assets.core.atomic import atomic_write_bytes
from gnt_assets.core.errors import TransientError, is_transient
from gnt_assets.core.quicklook import quicklook
from gnt_assets.core.zarr_regions import write_region
from gnt_assets.materialization import catalog_metadata, day_span, output_metadata, quicklook_metadata
from gnt_assets.partitions import conus404_day
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource
from gnt_assets.retries import TRANSIENT_RETRY, failure_for

GROUP = "conus404"
DAILY_STORE = ("conus404", "daily.zarr")

# Transient source errors (network, throttling, 5xx, timeouts) back off 5, 10, 20, 40 s, each +-50 % jitter.
SOURCE_RETRY = TRANSIENT_RETRY
# Backfill runs carry up to a year of days with one source open: the whole record is 43 runs, which the
# daemon launches in seconds (at 7 days per run it is 2,244 runs, measured at about 3 s each to launch:
# benchmarks/conus404_record.py). A failed day fails only itself, and a retry redoes only the failed days.
DAYS_PER_RUN = 366


LOCAL_LAST_DAY = date.fromisoformat(LOCAL_SAMPLE_START) + timedelta(days=LOCAL_SAMPLE_DAYS - 2)
DAILY_DESCRIPTION = (
    "CONUS404 daily fields (means, T2 min/max, HyTEST precipitation sums, bucket totals across resets, wind speed), "
    "one region per day of one zarr store in the source's Lambert conformal grid. Partitions span the whole record, "
    "1979-10-01 .. 2022-09-30; the last day has 23 hourly accumulation steps (flagged, not failed). "
    f"Local profile: the generated sample serves only {LOCAL_SAMPLE_START} .. {LOCAL_LAST_DAY} "
    f"({LOCAL_SAMPLE_DAYS} days of hours, the last day's sums need 00:00 of the next); other days fail saying so. "
    "Extend it with the `conus404_source` resource's `start`/`days`; the cloud profile serves the whole record."
)


def _store_bounds() -> tuple[str, str]:
    return conus404_day.start.strftime("%Y-%m-%d"), conus404_day.end.strftime("%Y-%m-%d")


@dg.asset(
    partitions_def=conus404_day,
    group_name=GROUP,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=DAYS_PER_RUN),
    retry_policy=SOURCE_RETRY,
    pool="conus404_source",  # bounds concurrent source readers (PC throttling; ~0.9 GB each at full size)
    kinds={"zarr", "xarray"},
    description=DAILY_DESCRIPTION,
)
def conus404_daily(context: dg.AssetExecutionContext, storage: StorageResource, conus404_source: Conus404Source,
                   conus404_rules: Conus404Rules) -> dg.MaterializeResult:
    path = storage.path(*DAILY_STORE)
    done = _recorded_in_earlier_attempts(context)
    days = [date.fromisoformat(k) for k in context.partition_keys if k not in done] or [date.fromisoformat(context.partition_keys[-1])]
    if done:
        context.log.info(f"retry {context.retry_number}: {len(done)} days written by an earlier attempt are kept; {len(days)} to do")
    try:
        hourly = conus404_source.open_hourly()
        variables = conus404_source.source_variables(hourly)
        added = ensure_store(path, daily_template(hourly, variables, *_store_bounds()))
    except Exception as error:
        raise failure_for(error, f"conus404 days {days[0]}..{days[-1]}: source could not be opened: {error}") from error
    if added:
        context.log.info(f"conus404 daily store: added {added} (stored days before this one read NaN there until re-run)")
    written, failed, metadata = [], {}, {}
    for index, day in enumerate(days, start=1):
        try:
            conus404_source.read_attempt(day)
            fields = aggregate_day(hourly, day, variables, conus404_source.accumulation_offset, conus404_source.window_hint())
            write_region(path, day_dataset(hourly, fields))
        except Exception as error:
            failed[str(day)] = error
            context.log.error(f"conus404 day {day} ({index}/{len(days)}) failed: {type(error).__name__}: {error}")
            continue
        written.append(day)
        metadata[day] = _daily_metadata(path, fields, context, storage)  # from the fields in memory: no read of the stored day
        missing = f", missing {fields.missing_hours}" if fields.missing_hours else ""
        context.log.info(f"conus404 day {day} ({index}/{len(days)}): {fields.hours_found} hourly steps{missing}")
        del fields
    if failed:
        # A ranged run keeps its written days although the step fails; its check step will not run,
        # so those days are checked here (one read each), and one failing a blocking check is named like a failed read.
        evaluations, invalid = evaluate_written_days(context.asset_key, path, written, conus404_rules.rules())
        for day in written:
            context.log_event(dg.AssetMaterialization(context.asset_key, partition=str(day), metadata=metadata[day]))
        for evaluation in evaluations:
            context.log_event(evaluation)
        failed.update({day: BlockingChecksFailed(_check_failures(evaluations, day)) for day in sorted(invalid)})
        summary = "; ".join(f"[{d}] {e}" for d, e in sorted(failed.items()))  # [day] <its own error>: read by run_history
        message = f"conus404 daily failed for {len(failed)} of {len(days)} days: {summary}"
        transient = next((e for e in failed.values() if is_transient(e)), None)
        if transient is not None:  # retried as a whole, still naming each day's own error
            raise TransientError(message) from transient
        raise failure_for(next(iter(failed.values())), message)
    return dg.MaterializeResult(metadata={**metadata[days[-1]], "days": dg.MetadataValue.text(", ".join(map(str, days)))})



def _recorded_in_earlier_attempts(context: dg.AssetExecutionContext) -> set[str]:
    """Days an earlier, failed attempt of this step wrote and recorded: a retry redoes only the others."""
    if context.retry_number == 0:
        return set()
    records = context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {r.dagster_event.partition for r in records if r.dagster_event.asset_key == context.asset_key}


def _check_failures(evaluations: list[dg.AssetCheckEvaluation], day: str) -> str:
    failed = [e for e in evaluations if e.partition == day and not e.passed and e.severity == dg.AssetCheckSeverity.ERROR]
    return "; ".join(f"check {e.check_name} failed: {e.metadata['finding'].value}" for e in failed)


def preview_day(day: date) -> bool:
    """Quick looks only for the first day of each month (516 over the record, not 31,412 pictures)."""
    return day.day == 1


def _daily_metadata(path, fields: DailyFields, context: dg.AssetExecutionContext, storage: StorageResource) -> dict:
    """files/bytes of the day's chunks, its hour count, T2 statistics; quick looks on preview days (under 4 KB otherwise)."""
    names = [*fields.fields, *fields.counts, "source_hours"]
    metadata = {**output_metadata(day_objects(path, fields.day, names)), "hours": dg.MetadataValue.int(fields.hours_found),
                "path": dg.MetadataValue.path(str(path)),
                **catalog_metadata(context, storage.root_path, {"zarr": path}, partition=str(fields.day), times=day_span(fields.day))}
    t2 = fields.fields.get("T2")
    if t2 is not None:
        finite = t2[np.isfinite(t2)]
        metadata["shape"] = dg.MetadataValue.text(" x ".join(map(str, t2.shape)))
        metadata["valid_share"] = dg.MetadataValue.float(round(finite.size / t2.size, 6))
        if finite.size:
            metadata.update({f"{k} (T2 daily mean, K)": dg.MetadataValue.float(float(f(finite)))
                             for k, f in (("min", np.min), ("mean", np.mean), ("max", np.max))})
        if preview_day(fields.day):  # rows flipped: y runs south -> north
            metadata.update(quicklook_metadata(quicklook(t2[::-1], variable="T2 daily mean", units="K"), title="T2 daily mean (K)"))
    precip = next((n for n in ("PREC_ACC_NC", "ACRAINLSM") if n in fields.fields), None)
    if precip and preview_day(fields.day):
        title = f"{precip} daily sum (mm)"  # only the picture: shape/min/mean/max above are T2's
        look = quicklook(fields.fields[precip][::-1], variable=f"{precip} daily sum", units="mm")
        metadata[title] = quicklook_metadata(look, title=title)[title]
    for name, count in fields.counts.items():
        metadata[name] = dg.MetadataValue.int(count)
    return metadata


@dg.asset(
    partitions_def=conus404_day,
    group_name=GROUP,
    deps=[conus404_daily],
    io_manager_key="geoparquet_io_manager",
    kinds={"pandas", "parquet"},
)
def conus404_daily_summary(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output[pd.DataFrame]:
    """Per day and daily variable: minimum, mean, maximum and NaN count of the stored day (pandera-validated)."""
    day = date.fromisoformat(context.partition_key)
    table = day_summary(read_day(storage.path(*DAILY_STORE), day))
    return dg.Output(table, metadata={"summary": dg.MetadataValue.md(table.round(3).to_markdown(index=False))})


def _cell(text: str, limit: int = 300) -> str:
    """A table cell: pipes escaped, cut at a word with an ellipsis (the JSON report keeps the whole text)."""
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " … (full text in ultimate_failures.json)"


@dg.asset(group_name=GROUP, deps=[conus404_daily], kinds={"json"})
def conus404_failure_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Days whose latest run failed after all retries, with the error text and time (also written as ultimate_failures.json)."""
    failures = run_history.failed_days(context.instance, conus404_daily.key)
    path = storage.path("conus404", "ultimate_failures.json")
    atomic_write_bytes(path, report_document(failures))
    rows = "\n".join(f"| {f.day} | {f.failed_at} | {_cell(f.error)} |" for f in failures)
    return dg.MaterializeResult(metadata={
        **output_metadata([path]),
        "failed_days": dg.MetadataValue.int(len(failures)),
        "failures": dg.MetadataValue.md("| day | failed at | error |\n|---|---|---|\n" + rows),
    })


@dg.asset(group_name=GROUP, deps=[conus404_daily], kinds={"zarr", "dask"})
def conus404_analysis_ready(context: dg.AssetExecutionContext, storage: StorageResource, compute: DaskComputeResource) -> dg.MaterializeResult:
    """The validated daily days rechunked for time-series reads (36 days x 350 x 350, HyTEST layout) over the whole
    record; each update rewrites only the 36-day blocks holding new, changed or no longer good days (on the Dask
    compute resource). `conus404/analysis_ready.days.json` lists the days it holds."""
    days = run_history.good_days(context.instance, conus404_daily.key)
    if not days:
        raise dg.Failure("conus404_analysis_ready: no conus404_daily day has passed its checks yet", allow_retries=False)
    target = storage.path("conus404", "analysis_ready.zarr")
    changed, cursor = run_history.materialized_since(context.instance, conus404_daily.key, ready.Ledger.read(target).cursor)
    with compute.get_client() as client:
        chunks, ledger, written = ready.update_copy(storage.path(*DAILY_STORE), target, days, changed, cursor, client)
    context.log.info(f"analysis-ready copy: {len(days)} days, rewrote {len(ledger.last_blocks)} blocks of 36 days ({written:,} bytes)")
    last_t2 = ready.last_day_field(target, days[-1], "T2")  # one time slice: reads one row of 36-day chunks
    look = (quicklook_metadata(quicklook(last_t2[::-1], variable=f"T2 daily mean {days[-1]}", units="K"), title=f"T2 daily mean (K), {days[-1]}")
            if last_t2 is not None else {})
    return dg.MaterializeResult(metadata={
        **look,
        "days": dg.MetadataValue.int(len(days)),
        "first_day": dg.MetadataValue.text(str(days[0])),
        "last_day": dg.MetadataValue.text(str(days[-1])),
        "blocks_rewritten": dg.MetadataValue.int(len(ledger.last_blocks)),
        "bytes_written": dg.MetadataValue.int(written),
        "chunks": dg.MetadataValue.json(chunks),
        "path": dg.MetadataValue.path(str(target)),
        **catalog_metadata(context, storage.root_path, {"zarr": target}),
    })
