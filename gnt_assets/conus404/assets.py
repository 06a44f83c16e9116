"""CONUS404 pipeline: hourly source -> daily store (+ summary, quick look) -> analysis-ready copy; failure report."""


from datetime import date

import dagster as dg
import pandas as pd

from gnt_assets.conus404 import analysis_ready as ready
from gnt_assets.conus404 import run_history
from gnt_assets.conus404.aggregation import aggregate_day
from gnt_assets.conus404.daily_store import daily_template, day_dataset, day_objects, day_summary, read_day, store_encoding
from gnt_assets.conus404.day_checks import BlockingChecksFailed, evaluate_written_days
from gnt_assets.conus404.failures import report_document
from gnt_assets.conus404.resources import Conus404Source
from gnt_assets.core.atomic import atomic_write_bytes
from gnt_assets.core.errors import is_transient
from gnt_assets.core.quicklook import quicklook
from gnt_assets.core.zarr_regions import create_store, write_region
from gnt_assets.materialization import catalog_metadata, day_span, output_metadata, quicklook_metadata
from gnt_assets.partitions import conus404_day
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource
from gnt_assets.retries import TRANSIENT_RETRY, failure_for

GROUP = "conus404"
DAILY_STORE = ("conus404", "daily.zarr")

# Transient source errors (network, throttling, 5xx, timeouts) back off 5, 10, 20, 40 s, each +-50 % jitter.
SOURCE_RETRY = TRANSIENT_RETRY


def _store_bounds() -> tuple[str, str]:
    return conus404_day.start.strftime("%Y-%m-%d"), conus404_day.end.strftime("%Y-%m-%d")


@dg.asset(
    partitions_def=conus404_day,
    group_name=GROUP,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=7),
    retry_policy=SOURCE_RETRY,
    pool="conus404_source",  # bounds concurrent source readers (PC throttling; ~0.9 GB each at full size)
    kinds={"zarr", "xarray"},
)
def conus404_daily(context: dg.AssetExecutionContext, storage: StorageResource, conus404_source: Conus404Source) -> dg.MaterializeResult:
    """CONUS404 daily fields (means, T2 min/max, HyTEST precipitation sums, bucket totals, wind speed),
    one region per day of one zarr store in the source's Lambert conformal grid."""
    path = storage.path(*DAILY_STORE)
    days = [date.fromisoformat(k) for k in context.partition_keys]
    try:
        hourly = conus404_source.open_hourly()
        variables = conus404_source.source_variables(hourly)
        template = daily_template(hourly, variables, *_store_bounds())
        create_store(path, template, encoding=store_encoding(template))
    except Exception as error:
        raise failure_for(error, f"conus404 days {days[0]}..{days[-1]}: source could not be opened: {type(error).__name__}: {error}") from error
    written, failed = [], {}
    for index, day in enumerate(days, start=1):
        try:
            conus404_source.read_attempt(day)
            fields = aggregate_day(hourly, day, variables, conus404_source.accumulation_offset)
            write_region(path, day_dataset(hourly, fields))
        except Exception as error:
            failed[str(day)] = error
            context.log.error(f"conus404 day {day} ({index}/{len(days)}) failed: {type(error).__name__}: {error}")
            continue
        written.append(day)
        missing = f", missing {fields.missing_hours}" if fields.missing_hours else ""
        context.log.info(f"conus404 day {day} ({index}/{len(days)}): {fields.hours_found} hourly steps{missing}")
    if failed:
        # A ranged run keeps its written days although the step fails; its check steps will not run,
        # so those days are checked here, and one failing a blocking check is named like a failed read.
        evaluations, invalid = evaluate_written_days(context.asset_key, path, written)
        for day in written:
            context.log_event(dg.AssetMaterialization(context.asset_key, partition=str(day), metadata=_daily_metadata(path, day, context, storage)))
        for evaluation in evaluations:
            context.log_event(evaluation)
        failed.update({day: BlockingChecksFailed("see its failed check evaluations") for day in sorted(invalid)})
        summary = "; ".join(f"[{d}] {type(e).__name__}: {e}" for d, e in failed.items())  # [day]: read by run_history
        retryable = next((e for e in failed.values() if is_transient(e)), next(iter(failed.values())))
        raise failure_for(retryable, f"conus404 daily failed for {len(failed)} of {len(days)} days: {summary}")
    return dg.MaterializeResult(metadata={**_daily_metadata(path, days[-1], context, storage), "days": dg.MetadataValue.text(", ".join(map(str, days)))})


def _daily_metadata(path, day: date, context: dg.AssetExecutionContext, storage: StorageResource) -> dict:
    """files/bytes of the day's chunks, its hour count, its STAC item and quick looks of daily mean T2 and precipitation."""
    stored = read_day(path, day)
    metadata = {**output_metadata(day_objects(path, day, list(stored.data_vars))), "hours": dg.MetadataValue.int(int(stored["source_hours"].values[0])),
                "path": dg.MetadataValue.path(str(path)), **catalog_metadata(context, storage.root_path, {"zarr": path}, partition=str(day), times=day_span(day))}
    if "T2" in stored:  # rows flipped: y runs south -> north
        metadata.update(quicklook_metadata(quicklook(stored["T2"].values[0][::-1], variable="T2 daily mean", units="K"), title="T2 daily mean (K)"))
    precip = next((n for n in ("PREC_ACC_NC", "ACRAINLSM") if n in stored), None)
    if precip:
        title = f"{precip} daily sum (mm)"  # the picture, its legend and numbers; the min/mean/max keys above are T2's
        metadata[title] = quicklook_metadata(quicklook(stored[precip].values[0][::-1], variable=f"{precip} daily sum", units="mm"), title=title)[title]
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


@dg.asset(group_name=GROUP, deps=[conus404_daily], kinds={"json"})
def conus404_failure_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The seed's ultimate_failures.json: days whose latest run failed after all retries, with error text and time."""
    failures = run_history.failed_days(context.instance, conus404_daily.key)
    path = storage.path("conus404", "ultimate_failures.json")
    atomic_write_bytes(path, report_document(failures))
    rows = "\n".join(f"| {f.day} | {f.failed_at} | {f.error[:200]} |" for f in failures)
    return dg.MaterializeResult(metadata={
        **output_metadata([path]),
        "failed_days": dg.MetadataValue.int(len(failures)),
        "failures": dg.MetadataValue.md("| day | failed at | error |\n|---|---|---|\n" + rows),
    })


@dg.asset(group_name=GROUP, deps=[conus404_daily], kinds={"zarr", "dask"})
def conus404_analysis_ready(context: dg.AssetExecutionContext, storage: StorageResource, compute: DaskComputeResource) -> dg.MaterializeResult:
    """The validated daily days rechunked for time-series reads (36 days x 350 x 350, HyTEST layout), listing its days."""
    days = run_history.good_days(context.instance, conus404_daily.key)
    if not days:
        raise dg.Failure("conus404_analysis_ready: no conus404_daily day has passed its checks yet", allow_retries=False)
    target = storage.path("conus404", "analysis_ready.zarr")
    with compute.get_client() as client:
        chunks = ready.rechunk_days(storage.path(*DAILY_STORE), days, target, client)
    context.log.info(f"analysis-ready copy of {len(days)} days, chunks {chunks}")
    last_t2 = ready.last_day_field(target, "T2")  # one time slice: reads one row of 36-day chunks
    look = quicklook_metadata(quicklook(last_t2[::-1], variable=f"T2 daily mean {days[-1]}", units="K"), title=f"T2 daily mean (K), {days[-1]}") if last_t2 is not None else {}
    return dg.MaterializeResult(metadata={
        **output_metadata([target]),
        **catalog_metadata(context, storage.root_path, {"zarr": target}),
        **look,
        "days": dg.MetadataValue.int(len(days)),
        "first_day": dg.MetadataValue.text(str(days[0])),
        "last_day": dg.MetadataValue.text(str(days[-1])),
        "chunks": dg.MetadataValue.json(chunks),
    })
