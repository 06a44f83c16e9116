"""Checks on the stored CONUS404 days (blocking where a day is unusable) and on the derived assets."""


import json
from collections.abc import Callable
from datetime import date

import dagster as dg
import xarray as xr

from gnt_assets.conus404 import analysis_ready as ready
from gnt_assets.conus404.assets import (
    DAILY_STORE,
    conus404_analysis_ready,
    conus404_daily,
    conus404_daily_summary,
    conus404_failure_report,
)
from gnt_assets.conus404.daily_store import read_day, zarr_target
from gnt_assets.conus404.day_checks import DAY_CHECKS, DESCRIPTIONS, result_metadata, severity
from gnt_assets.conus404.validation import Finding
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import conus404_day
from gnt_assets.resources.storage import StorageResource


def _day_check(name: str, finding: Callable[[xr.Dataset], Finding], blocking: bool) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=conus404_daily, name=name, partitions_def=conus404_day, blocking=blocking,
                     description=DESCRIPTIONS[name])
    def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        path = storage.path(*DAILY_STORE)
        findings = {key: finding(read_day(path, date.fromisoformat(key))) for key in context.partition_keys}
        passed, metadata = result_metadata(findings)
        return dg.AssetCheckResult(passed=passed, severity=severity(blocking), metadata=metadata)

    return _check


daily_checks = [_day_check(name, finding, blocking) for name, (finding, blocking) in DAY_CHECKS.items()]


@dg.asset_check(asset=conus404_daily_summary, partitions_def=conus404_day, blocking=True,
                description="One summary row per daily variable, and no variable without a single value.")
def summary_covers_variables(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    day = date.fromisoformat(context.partition_key)
    stored = read_day(storage.path(*DAILY_STORE), day)
    table = read_table(storage.path("tables", "conus404_daily_summary", f"{context.partition_key}.parquet"))
    expected = sorted(n for n, v in stored.data_vars.items() if {"y", "x"} <= set(v.dims))
    empty = sorted(table.loc[table["mean"].isna(), "variable"])
    passed = sorted(table["variable"]) == expected and not empty
    return dg.AssetCheckResult(passed=passed, metadata={"rows": len(table), "expected": len(expected), "empty": ", ".join(empty)})


@dg.asset_check(asset=conus404_failure_report, description="Warns while any day is listed as failed for good.")
def no_ultimate_failures(storage: StorageResource) -> dg.AssetCheckResult:
    report = json.loads(storage.path("conus404", "ultimate_failures.json").read_text())
    days = [f["day"] for f in report["failures"]]
    return dg.AssetCheckResult(passed=not days, severity=dg.AssetCheckSeverity.WARN,
                               metadata={"failed_days": dg.MetadataValue.text(", ".join(days) or "none")})


@dg.asset_check(asset=conus404_analysis_ready, blocking=True,
                description="The copy has the time-series chunk layout and lists exactly the days it holds.")
def analysis_ready_layout(storage: StorageResource) -> dg.AssetCheckResult:
    target = storage.path("conus404", "analysis_ready.zarr")
    copy = xr.open_zarr(zarr_target(target), consolidated=False)
    listed = ready.contained_days(target)
    held = [str(t)[:10] for t in copy["time"].values]
    expected = ready.target_chunks(dict(copy.sizes))
    actual = {dim: copy["T2"].encoding["chunks"][i] for i, dim in enumerate(copy["T2"].dims)} if "T2" in copy else expected
    passed = listed == held and actual == expected
    return dg.AssetCheckResult(passed=passed, metadata={"days": len(held), "chunks": dg.MetadataValue.json(actual),
                                                        "expected_chunks": dg.MetadataValue.json(expected)})
