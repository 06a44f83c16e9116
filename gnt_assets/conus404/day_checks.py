"""Day findings -> Dagster check results, shared by the one check step and by a ranged run that fails.

Every rule of a day is computed from one read of the stored day
(``validation.evaluate_day``); the results are then split into one check
result per rule. A ranged (multi_run) run that fails one day never reaches its
check step, so conus404_daily evaluates the days it did write itself (one read
each) and logs those evaluations: those days are validated like days of a
successful run.
"""

from __future__ import annotations

from datetime import date

import dagster as dg

from gnt_assets.conus404.daily_store import read_day
from gnt_assets.conus404.validation import BLOCKING, WARNINGS, Finding, Rules, evaluate_day
from gnt_assets.core.errors import InputError

DESCRIPTIONS = {
    "hours_complete": "All 24 hourly source steps of the day were present (23 on the record's last day, 2022-09-30: a WARN).",
    "no_all_nan_variable": "No daily variable is NaN everywhere.",
    "t2_plausible": "Daily mean, minimum and maximum T2 lie within [220, 330] K (up to the bad-cell share).",
    "dewpoint_below_temperature": "Daily mean TD2 exceeds daily mean T2 by at most 1 K (tolerated up to the bad-cell share).",
    "lower_bounds": "Every variable with a lower bound stays above it, less a small tolerance (up to the bad-cell share).",
    "non_negative_totals": "No accumulated daily total is negative (bucket resets are differenced across and reported).",
    "nan_share": "No variable has more than 1 % NaN cells (soft).",
    "t2_near_bounds": "No daily T2 extreme within 5 K of the plausibility bounds (soft).",
}
DAY_CHECKS: dict[str, bool] = {**dict.fromkeys(BLOCKING, True), **dict.fromkeys(WARNINGS, False)}
MAX_TEXT = 600  # per check and day in metadata (the event log budget is 4 KB per day)


class BlockingChecksFailed(InputError):
    """A day of a failed ranged run that was written but failed a blocking check."""


def severity(blocking: bool) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN


def evaluate_stored_days(path, days: list[date], rules: Rules) -> dict[str, dict[str, Finding]]:
    """Day -> rule -> finding; each stored day is read once for every rule."""
    return {str(day): evaluate_day(read_day(path, day), rules) for day in days}


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1].rsplit(" ", 1)[0] + " …"


def check_outcome(name: str, findings: dict[str, Finding]) -> tuple[bool, dg.AssetCheckSeverity, dict[str, dg.MetadataValue]]:
    """One check over the days of a run: passed, severity, metadata (``failed_days``/``findings`` are read by run_history)."""
    blocking = DAY_CHECKS[name]
    bad = {day: f for day, f in findings.items() if not f.passed}
    errors = {day: f for day, f in bad.items() if blocking and not f.warn_only}
    level = severity(bool(errors) or (blocking and not bad))
    shown = bad or findings
    text = "; ".join(f"[{day}] {f.text}" if len(findings) > 1 else f.text for day, f in shown.items())
    details = {day: f.details for day, f in findings.items() if f.details}
    values = [f.value for f in findings.values() if f.value is not None]
    metadata = {
        "finding": dg.MetadataValue.text(_clip(text)),
        "failed_days": dg.MetadataValue.text(", ".join(errors)),
        **({"findings": dg.MetadataValue.json({day: _clip(f.text) for day, f in errors.items()})} if errors else {}),
        **({"offenders": dg.MetadataValue.json(details)} if details else {}),
        **({"value": dg.MetadataValue.float(float(max(values)))} if values else {}),
    }
    return not bad, level, metadata


def check_results(findings_by_day: dict[str, dict[str, Finding]]) -> list[dg.AssetCheckResult]:
    """One result per check, each over every day of the run."""
    results = []
    for name in DAY_CHECKS:
        passed, level, metadata = check_outcome(name, {day: f[name] for day, f in findings_by_day.items()})
        results.append(dg.AssetCheckResult(check_name=name, passed=passed, severity=level, metadata=metadata))
    return results


def evaluate_written_days(asset_key: dg.AssetKey, path, days: list[date], rules: Rules) -> tuple[list[dg.AssetCheckEvaluation], set[str]]:
    """Every day check on each of ``days`` (one evaluation per day and check), and the days a blocking one failed."""
    evaluations, failed = [], set()
    for day, findings in evaluate_stored_days(path, days, rules).items():
        for name, blocking in DAY_CHECKS.items():
            passed, level, metadata = check_outcome(name, {day: findings[name]})
            if level == dg.AssetCheckSeverity.ERROR and not passed:
                failed.add(day)
            evaluations.append(dg.AssetCheckEvaluation(
                asset_key=asset_key, check_name=name, passed=passed, severity=level, blocking=blocking,
                metadata=metadata, description=DESCRIPTIONS[name], partition=day))
    return evaluations, failed
