"""Day findings -> Dagster check results, shared by the check steps and by a ranged run that fails.

A ranged (multi_run) run that fails one day never reaches its check steps, so
conus404_daily evaluates the same checks on the days it did write and logs them
itself: those days are then validated exactly like days of a successful run.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import dagster as dg
import xarray as xr

from gnt_assets.conus404.daily_store import read_day
from gnt_assets.conus404.validation import BLOCKING, WARNINGS, Finding
from gnt_assets.core.errors import InputError

DESCRIPTIONS = {
    "hours_complete": "All 24 hourly source steps of the day were present.",
    "no_all_nan_variable": "No daily variable is NaN everywhere.",
    "t2_plausible": "Daily mean, minimum and maximum T2 lie within [220, 330] K.",
    "dewpoint_below_temperature": "Daily mean TD2 never exceeds daily mean T2 by more than 1e-3 K.",
    "non_negative_water": "Precipitation sums and Q2 are never negative.",
    "nan_share": "No variable has more than 1 % NaN cells (soft).",
    "t2_near_bounds": "No daily T2 extreme within 5 K of the plausibility bounds (soft).",
}
DAY_CHECKS: dict[str, tuple[Callable[[xr.Dataset], Finding], bool]] = {
    **{name: (finding, True) for name, finding in BLOCKING.items()},
    **{name: (finding, False) for name, finding in WARNINGS.items()},
}


class BlockingChecksFailed(InputError):
    """A day of a failed ranged run that was written but failed a blocking check."""


def severity(blocking: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN


def result_metadata(findings: dict[str, Finding]) -> tuple[bool, dict[str, dg.MetadataValue]]:
    """Whether every day passed, and the check's metadata (``failed_days`` is read by run_history)."""
    bad = {key: f for key, f in findings.items() if not f.passed}
    text = "; ".join(f"{key}: {f.text}" for key, f in (bad or findings).items())
    values = [f.value for f in findings.values() if f.value is not None]
    return not bad, {
        "finding": dg.MetadataValue.text(text),
        "failed_days": dg.MetadataValue.text(", ".join(bad)),
        **({"value": dg.MetadataValue.float(float(max(values)))} if values else {}),
    }


def evaluate_written_days(asset_key: dg.AssetKey, path, days: list[date]) -> tuple[list[dg.AssetCheckEvaluation], set[str]]:
    """Every day check on each of ``days`` (one evaluation per day and check), and the days a blocking one failed."""
    evaluations, failed = [], set()
    for day in days:
        stored = read_day(path, day)
        for name, (finding, blocking) in DAY_CHECKS.items():
            passed, metadata = result_metadata({str(day): finding(stored)})
            if blocking and not passed:
                failed.add(str(day))
            evaluations.append(dg.AssetCheckEvaluation(
                asset_key=asset_key, check_name=name, passed=passed, severity=severity(blocking),
                metadata=metadata, description=DESCRIPTIONS[name], partition=str(day)))
    return evaluations, failed
