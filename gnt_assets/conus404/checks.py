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
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.conus404.validation import BLOCKING, WARNINGS, Finding
from gnt_assets.partitions import conus404_day
from gnt_assets.resources.storage import StorageResource

DESCRIPTIONS = {
    "hours_complete": "All 24 hourly source steps of the day were present.",
    "no_all_nan_variable": "No daily variable is NaN everywhere.",
    "t2_plausible": "Daily mean, minimum and maximum T2 lie within [220, 330] K.",
    "dewpoint_below_temperature": "Daily mean TD2 never exceeds daily mean T2 by more than 1e-3 K.",
    "non_negative_water": "Precipitation sums and Q2 are never negative.",
    "nan_share": "No variable has more than 1 % NaN cells (soft).",
    "t2_near_bounds": "No daily T2 extreme within 5 K of the plausibility bounds (soft).",
}


def _day_check(name: str, finding: Callable[[xr.Dataset], Finding], blocking: bool) -> dg.AssetChecksDefinition:
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=conus404_daily, name=name, partitions_def=conus404_day, blocking=blocking,
                     description=DESCRIPTIONS[name])
    def _check(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
        path = storage.path(*DAILY_STORE)
        findings = {key: finding(read_day(path, date.fromisoformat(key))) for key in context.partition_keys}
        bad = {key: f for key, f in findings.items() if not f.passed}
        text = "; ".join(f"{key}: {f.text}" for key, f in (bad or findings).items())
        values = [f.value for f in findings.values() if f.value is not None]
        return dg.AssetCheckResult(passed=not bad, severity=severity, metadata={
            "finding": dg.MetadataValue.text(text),
            "failed_days": dg.MetadataValue.text(", ".join(bad)),
            **({"value": dg.MetadataValue.float(float(max(values)))} if values else {}),
        })

    return _check


daily_checks = [_day_check(n, f, True) for n, f in BLOCKING.items()] + [_day_check(n, f, False) for n, f in WARNINGS.items()]


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
