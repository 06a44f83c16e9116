"""The conus404 pipeline's assets, checks, sensors and schedules, and its resources for a profile."""

import os
from datetime import timedelta
from typing import Any

import dagster as dg
from upath import UPath

from gnt_assets.conus404.assets import (
    conus404_analysis_ready,
    conus404_daily,
    conus404_daily_summary,
    conus404_failure_report,
)
from gnt_assets.conus404.checks import (
    analysis_ready_layout,
    analysis_ready_matches_daily,
    daily_checks,
    no_ultimate_failures,
    summary_covers_variables,
)
from gnt_assets.conus404.local import LocalConus404Source
from gnt_assets.conus404.resources import PC_STAC_URL, Conus404Rules, PlanetaryComputerConus404Source
from gnt_assets.conus404.schedules import conus404_catchup_job, conus404_catchup_schedule
from gnt_assets.conus404.sensors import conus404_failure_report_job, conus404_failure_report_sensor
from gnt_assets.vocabulary import FOLLOWS_SAME_PARTITION, describe

KINDS = {
    "conus404_daily": {"python", "xarray", "zarr"},
    "conus404_daily_summary": {"python", "pandas", "parquet"},
    "conus404_failure_report": {"python", "json"},
    "conus404_analysis_ready": {"python", "dask", "zarr"},
}

defs = dg.Definitions(
    assets=describe(
        [conus404_daily, conus404_daily_summary, conus404_failure_report, conus404_analysis_ready],
        owner="team:climate",
        kinds=KINDS,
        # A day's summary follows its day, for every day (the daily catch-up fills historical days).
        automation={"conus404_daily_summary": FOLLOWS_SAME_PARTITION},
        # The catch-up schedule runs every morning: a newly published day lands within two days (warned after one).
        freshness={"conus404_daily": dg.FreshnessPolicy.time_window(fail_window=timedelta(days=2), warn_window=timedelta(days=1))},
    ),
    asset_checks=[*daily_checks, summary_covers_variables, no_ultimate_failures, analysis_ready_layout,
                  analysis_ready_matches_daily],
    sensors=[conus404_failure_report_sensor],
    schedules=[conus404_catchup_schedule],
    jobs=[conus404_catchup_job, conus404_failure_report_job],
)


# The sample's deliberately awkward days (the demo materializes both; they pass with their findings in metadata):
# a bucket reset of ACSWDNB (as at a water-year restart) and three bad cells, under the 0.1 % threshold.
SAMPLE_FAULTS = {"2020-07-03": "bucket_reset", "2020-07-04": "few_bad_cells"}


def resource_set(profile: str) -> dict[str, Any]:
    rules = {"conus404_rules": Conus404Rules()}
    if profile == "local":
        root = UPath(os.environ.get("GNT_STORAGE_ROOT", "./data"))
        root = root if "://" in str(root) else root.absolute()
        source = LocalConus404Source(root=str(root / "sources" / "conus404"), endpoint_url=os.environ.get("GNT_S3_ENDPOINT_URL"),
                                     faults=SAMPLE_FAULTS)
        return {"conus404_source": source, **rules}
    return {**rules,
        "conus404_source": PlanetaryComputerConus404Source(
            stac_url=os.environ.get("GNT_CONUS404_STAC_URL", PC_STAC_URL),
            subscription_key=dg.EnvVar("PC_SDK_SUBSCRIPTION_KEY") if os.environ.get("PC_SDK_SUBSCRIPTION_KEY") else None,
        )
    }
