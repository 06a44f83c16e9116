"""Checks on the stored CONUS404 days (blocking where a day is unusable) and on the derived assets."""


import json
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
from gnt_assets.conus404.day_checks import DAY_CHECKS, DESCRIPTIONS, check_results, evaluate_stored_days
from gnt_assets.conus404.resources import Conus404Rules
from gnt_assets.io_managers.geoparquet import read_table
from gnt_assets.partitions import conus404_day
from gnt_assets.resources.storage import StorageResource

DAY_CHECK_SPECS = [
    dg.AssetCheckSpec(name, asset=conus404_daily, blocking=blocking, description=DESCRIPTIONS[name], partitions_def=conus404_day)
    for name, blocking in DAY_CHECKS.items()
]


@dg.multi_asset_check(specs=DAY_CHECK_SPECS, name="conus404_daily_checks",
                      description="Every rule of conus404_daily from one read of each stored day, as one result per rule.")
def conus404_daily_checks(context: dg.AssetCheckExecutionContext, storage: StorageResource, conus404_rules: Conus404Rules):
    path = storage.path(*DAILY_STORE)
    days = [date.fromisoformat(key) for key in context.partition_keys]
    yield from check_results(evaluate_stored_days(path, days, conus404_rules.rules()))


daily_checks = [conus404_daily_checks]


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
                description="The copy has the time-series chunk layout, and every day it lists holds data.")
def analysis_ready_layout(storage: StorageResource) -> dg.AssetCheckResult:
    target = storage.path("conus404", "analysis_ready.zarr")
    copy = xr.open_zarr(zarr_target(target), consolidated=False)
    ledger = ready.Ledger.read(target)
    expected = ready.target_chunks(dict(copy.sizes))
    actual = {dim: copy["T2"].encoding["chunks"][i] for i, dim in enumerate(copy["T2"].dims)} if "T2" in copy else expected
    hours = copy["source_hours"].values  # (time,): one small array
    index = {str(t)[:10]: i for i, t in enumerate(copy["time"].values)}
    empty = [d for d in ledger.days if d not in index or hours[index[d]] == 0]
    passed = actual == expected and not empty and bool(ledger.days)
    return dg.AssetCheckResult(passed=passed, metadata={"days": len(ledger.days), "chunks": dg.MetadataValue.json(actual),
                                                        "expected_chunks": dg.MetadataValue.json(expected),
                                                        "listed_without_data": ", ".join(empty[:20])})


@dg.asset_check(asset=conus404_analysis_ready, blocking=True,
                description="The copy equals the daily store on the days it lists, in every block the latest update rewrote.")
def analysis_ready_matches_daily(storage: StorageResource) -> dg.AssetCheckResult:
    target = storage.path("conus404", "analysis_ready.zarr")
    ledger = ready.Ledger.read(target)
    differences = ready.compare_blocks(storage.path(*DAILY_STORE), target, ledger)
    passed = not any(differences.values())
    return dg.AssetCheckResult(passed=passed, metadata={"blocks_compared": len(ledger.last_blocks),
                                                        "differing_cells": dg.MetadataValue.json(differences)})
