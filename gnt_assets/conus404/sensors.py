"""Refreshes the failure report whenever a conus404_daily run has finished since the last refresh."""


import dagster as dg

from gnt_assets.conus404.assets import conus404_daily, conus404_failure_report
from gnt_assets.conus404.run_history import FINISHED, run_plans

conus404_failure_report_job = dg.define_asset_job(
    "conus404_failure_report_job",
    selection=dg.AssetSelection.assets(conus404_failure_report.key),
    description="Rebuilds the CONUS404 failure report: the days whose latest run failed after every retry.",
)


@dg.sensor(
    job=conus404_failure_report_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Rebuilds the CONUS404 failure report after any conus404_daily run finishes (a success can clear a "
                "day that failed before).",
)
def conus404_failure_report_sensor(context: dg.SensorEvaluationContext):
    """Requests the report after new finished daily runs (failed or succeeded: a success can clear a day)."""
    cursor = float(context.cursor or 0)
    newest = cursor
    for record in context.instance.get_run_records(dg.RunsFilter(statuses=FINISHED), order_by="update_timestamp", ascending=False, limit=200):
        stamp = record.update_timestamp.timestamp()
        if stamp <= cursor:
            break
        if run_plans(context.instance, record, conus404_daily.key):  # never a scan of the asset's planned history
            newest = max(newest, stamp)
    if newest == cursor:
        return dg.SkipReason("no conus404_daily run finished since the last report")
    context.update_cursor(str(newest))
    return dg.RunRequest(run_key=f"conus404-failure-report-{newest}")
