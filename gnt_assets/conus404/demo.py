"""The conus404 pipeline's part of `make demo`: five days of the local window, their summaries,
the failure report and the analysis-ready copy."""

import dagster as dg

from gnt_assets.demo_runs import materialize_partitions

DEMO_DAYS = ["2020-07-01", "2020-07-02", "2020-07-03", "2020-07-04", "2020-07-05"]


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the conus404 demo partitions on the local backends."""
    materialize_partitions(defs, instance, ["conus404_daily", "conus404_daily_summary"], DEMO_DAYS, job="conus404_demo")
    materialize_partitions(defs, instance, ["conus404_failure_report", "conus404_analysis_ready"], job="conus404_demo")
