"""What makes a CONUS404 day unusable (blocking) and what only deserves a look (warnings).

Every rule is computed by ``evaluate_day`` from one stored day already in memory
(one read serves all checks). A cell rule fails the day only when the share of
offending cells exceeds ``Rules.max_bad_share`` (default 0.1 %: 1,388 of the
1.39 million cells): a single bad cell of a WRF field is a finding, not a lost
day. Each finding carries the offenders' count, share and worst value.

Tolerances are the seed's: T2 in [220, 330] K; TD2 <= T2 + 1 K (WRF's 2 m
diagnostics exceed 100 % humidity, so daily mean dewpoints slightly above the
temperature are real); ACRAINLSM, W (wind speed) and LAI >= -1. Every variable's
``lower_bound`` is enforced (with the seed's tolerance where it had one, 0 else),
and a negative daily total of an accumulated variable is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import xarray as xr

from gnt_assets.conus404.aggregation import HOURS, RECORD_LAST_DAY, resets_name
from gnt_assets.conus404.variables import CATALOG, WIND_SPEED

T2_BOUNDS = (220.0, 330.0)
DEWPOINT_TOLERANCE = 1.0  # K, the seed's
MAX_BAD_SHARE = 0.001
NAN_SHARE_WARN = 0.01
NEAR_BOUND_MARGIN = 5.0  # K from a T2 bound
# Below lower_bound - tolerance is impossible. The seed's rules: ACRAINLSM, Q2, W, LAI >= -1; for Q2 (kg kg-1)
# a tolerance of 1 would accept any humidity, so it keeps 0 like the variables the seed did not check.
LOWER_BOUND_TOLERANCE = {"ACRAINLSM": 1.0, "PREC_ACC_NC": 1.0, WIND_SPEED: 1.0, "LAI": 1.0}
ACCUMULATED = tuple(name for name, v in CATALOG.items() if v.kind != "instant")


def lower_bounds() -> dict[str, float]:
    """Daily variable -> the value below which it is impossible (lower_bound minus the seed's tolerance)."""
    bounds = {name: v.lower_bound - LOWER_BOUND_TOLERANCE.get(name, 0.0) for name, v in CATALOG.items() if v.lower_bound is not None}
    bounds[WIND_SPEED] = 0.0 - LOWER_BOUND_TOLERANCE[WIND_SPEED]
    return bounds


@dataclass(frozen=True)
class Rules:
    max_bad_share: float = MAX_BAD_SHARE
    dewpoint_tolerance: float = DEWPOINT_TOLERANCE
    nan_share_warn: float = NAN_SHARE_WARN


@dataclass(frozen=True)
class Finding:
    passed: bool
    text: str
    value: float | None = None
    warn_only: bool = False  # a blocking rule that found something deliberate (the record's last day)
    details: dict = field(default_factory=dict)


def expected_hours(day: date) -> int:
    """24, except on the record's last day, whose accumulation window would need 00:00 of 2022-10-01."""
    return HOURS - 1 if day == RECORD_LAST_DAY else HOURS


def _offenders(name: str, mask: np.ndarray, values: np.ndarray, worst: str) -> dict:
    count = int(mask.sum())
    if not count:
        return {}
    bad = values[mask]
    return {name: {"cells": count, "share": round(count / mask.size, 6),
                   "worst": round(float(bad.min() if worst == "min" else bad.max()), 4)}}


def _share_finding(offenders: dict, rules: Rules, what: str, ok: str, extra: str = "") -> Finding:
    worst_share = max((o["share"] for o in offenders.values()), default=0.0)
    passed = worst_share <= rules.max_bad_share
    if offenders:
        listed = ", ".join(f"{n}: {o['cells']} cells ({o['share']:.4%}), worst {o['worst']}" for n, o in offenders.items())
        verdict = "within" if passed else "above"
        text = f"{what}: {listed}; {verdict} the {rules.max_bad_share:.2%} threshold"
    else:
        text = ok
    return Finding(passed, text + extra, worst_share, details=offenders)


def hours_complete(day: xr.Dataset, day_date: date) -> Finding:
    hours, wanted = int(day["source_hours"].values.min()), expected_hours(day_date)
    if hours == wanted < HOURS:
        return Finding(False, f"{hours} of {HOURS} hourly steps: {day_date} is the record's last day; its accumulation "
                              f"window's last step ({day_date}+1 00:00) does not exist, so sums cover {hours} hours",
                       hours, warn_only=True)
    return Finding(hours == wanted, f"{hours} of {wanted} hourly steps present", hours)


def no_all_nan_variable(day: xr.Dataset) -> Finding:
    empty = [name for name in _fields(day) if not np.isfinite(day[name].values).any()]
    return Finding(not empty, f"all-NaN variables: {empty}" if empty else "every variable has values", len(empty))


def t2_plausible(day: xr.Dataset, rules: Rules) -> Finding:
    low, high = T2_BOUNDS
    offenders: dict = {}
    for name in ("T2", "T2_min", "T2_max"):
        if name in day:
            values = day[name].values[0]
            finite = np.isfinite(values)
            offenders |= _offenders(name, finite & (values < low), values, "min")
            offenders |= {f"{k} high": v for k, v in _offenders(name, finite & (values > high), values, "max").items()}
    return _share_finding(offenders, rules, f"T2 outside [{low}, {high}] K", f"T2 within [{low}, {high}] K")


def dewpoint_below_temperature(day: xr.Dataset, rules: Rules) -> Finding:
    if "TD2" not in day or "T2" not in day:
        return Finding(True, "TD2 or T2 not configured")
    excess = day["TD2"].values[0] - day["T2"].values[0]
    offenders = _offenders("TD2 - T2", np.isfinite(excess) & (excess > rules.dewpoint_tolerance), excess, "max")
    largest = float(np.nanmax(excess)) if np.isfinite(excess).any() else float("nan")
    return _share_finding(offenders, rules, f"TD2 > T2 + {rules.dewpoint_tolerance} K",
                          f"TD2 <= T2 + {rules.dewpoint_tolerance} K everywhere (largest TD2 - T2: {largest:.3f} K)")


def lower_bounds_hold(day: xr.Dataset, rules: Rules) -> Finding:
    offenders: dict = {}
    bounds = {n: b for n, b in lower_bounds().items() if n in day}
    for name, bound in bounds.items():
        values = day[name].values[0]
        offenders |= _offenders(name, np.isfinite(values) & (values < bound), values, "min")
    return _share_finding(offenders, rules, "below the lower bound",
                          f"{len(bounds)} variables at or above their lower bounds")


def non_negative_totals(day: xr.Dataset, rules: Rules) -> Finding:
    """Accumulated daily totals (precipitation sums, bucket differences after resets) are never negative."""
    offenders: dict = {}
    for name in (n for n in ACCUMULATED if n in day):
        values = day[name].values[0]
        offenders |= _offenders(name, np.isfinite(values) & (values < 0), values, "min")
    resets = {n: int(day[resets_name(n)].values[0]) for n in ACCUMULATED if resets_name(n) in day}
    resets = {n: c for n, c in resets.items() if c}
    extra = f"; bucket resets handled (cells): {resets}" if resets else "; no bucket resets"
    finding = _share_finding(offenders, rules, "negative daily totals", "no negative daily totals", extra)
    # any negative bucket total means an undetected reset: the day's totals are wrong, whatever the share
    strict = any(n in offenders for n in ACCUMULATED if CATALOG[n].kind == "bucket_accumulation")
    return Finding(finding.passed and not strict, finding.text, finding.value, details={**offenders, "resets": resets})


def nan_share(day: xr.Dataset, rules: Rules) -> Finding:
    shares = {name: float(np.isnan(day[name].values).mean()) for name in _fields(day)}
    high = {n: round(s, 4) for n, s in shares.items() if s > rules.nan_share_warn}
    worst = max(shares.values(), default=0.0)
    return Finding(not high, f"NaN share above {rules.nan_share_warn:.0%}: {high}" if high else f"largest NaN share {worst:.4f}", worst)


def t2_near_bounds(day: xr.Dataset, margin: float = NEAR_BOUND_MARGIN) -> Finding:
    low, high = T2_BOUNDS
    values = np.concatenate([day[n].values.ravel() for n in ("T2_min", "T2_max") if n in day] or [np.array([])])
    near = int(np.sum((values < low + margin) | (values > high - margin)))
    return Finding(near == 0, f"{near} daily T2 extremes within {margin} K of a bound", near)


BLOCKING = ("hours_complete", "no_all_nan_variable", "t2_plausible", "dewpoint_below_temperature",
            "lower_bounds", "non_negative_totals")
WARNINGS = ("nan_share", "t2_near_bounds")


def evaluate_day(day: xr.Dataset, rules: Rules | None = None) -> dict[str, Finding]:
    """Every rule on one stored day (loaded once); rule name -> finding."""
    rules = rules or Rules()
    day_date = date.fromisoformat(str(day["time"].values[0])[:10])
    return {
        "hours_complete": hours_complete(day, day_date),
        "no_all_nan_variable": no_all_nan_variable(day),
        "t2_plausible": t2_plausible(day, rules),
        "dewpoint_below_temperature": dewpoint_below_temperature(day, rules),
        "lower_bounds": lower_bounds_hold(day, rules),
        "non_negative_totals": non_negative_totals(day, rules),
        "nan_share": nan_share(day, rules),
        "t2_near_bounds": t2_near_bounds(day),
    }


def _fields(day: xr.Dataset) -> list[str]:
    return [name for name, v in day.data_vars.items() if {"y", "x"} <= set(v.dims)]
