"""What makes a CONUS404 day unusable (blocking) and what only deserves a look (warnings).

Bounds are the seed's quality rules: T2 in [220, 330] K, dewpoint never above
temperature (1e-3 K tolerance), precipitation and humidity never negative.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from gnt_assets.conus404.aggregation import HOURS

T2_BOUNDS = (220.0, 330.0)
DEWPOINT_TOLERANCE = 1e-3
NON_NEGATIVE = ("ACRAINLSM", "PREC_ACC_NC", "Q2")
NAN_SHARE_WARN = 0.01
NEAR_BOUND_MARGIN = 5.0  # K from a T2 bound


@dataclass(frozen=True)
class Finding:
    passed: bool
    text: str
    value: float | None = None


def hours_complete(day: xr.Dataset) -> Finding:
    hours = int(day["source_hours"].values.min())
    return Finding(hours == HOURS, f"{hours} of {HOURS} hourly steps present", hours)


def no_all_nan_variable(day: xr.Dataset) -> Finding:
    empty = [name for name in _fields(day) if not np.isfinite(day[name].values).any()]
    return Finding(not empty, f"all-NaN variables: {empty}" if empty else "every variable has values", len(empty))


def t2_plausible(day: xr.Dataset) -> Finding:
    low, high = T2_BOUNDS
    bad = {}
    for name in ("T2", "T2_min", "T2_max"):
        if name in day:
            values = day[name].values
            outside = np.isfinite(values) & ((values < low) | (values > high))
            if outside.any():
                bad[name] = (float(np.nanmin(values)), float(np.nanmax(values)), int(outside.sum()))
    text = f"T2 outside [{low}, {high}] K (min, max, cells): {bad}" if bad else f"T2 within [{low}, {high}] K"
    return Finding(not bad, text, float(sum(b[2] for b in bad.values())))


def dewpoint_below_temperature(day: xr.Dataset) -> Finding:
    if "TD2" not in day or "T2" not in day:
        return Finding(True, "TD2 or T2 not configured")
    excess = day["TD2"].values - day["T2"].values
    count = int(np.sum(excess > DEWPOINT_TOLERANCE))
    text = f"{count} cells with TD2 > T2 + {DEWPOINT_TOLERANCE} K (max excess {float(np.nanmax(excess)):.3f} K)"
    return Finding(count == 0, text, count)


def non_negative_water(day: xr.Dataset) -> Finding:
    negative = {n: float(np.nanmin(day[n].values)) for n in NON_NEGATIVE if n in day and np.nanmin(day[n].values) < 0}
    return Finding(not negative, f"negative precipitation/humidity (minimum): {negative}" if negative else "no negative values", len(negative))


def nan_share(day: xr.Dataset, threshold: float = NAN_SHARE_WARN) -> Finding:
    shares = {name: float(np.isnan(day[name].values).mean()) for name in _fields(day)}
    high = {n: round(s, 4) for n, s in shares.items() if s > threshold}
    worst = max(shares.values(), default=0.0)
    return Finding(not high, f"NaN share above {threshold:.0%}: {high}" if high else f"largest NaN share {worst:.4f}", worst)


def t2_near_bounds(day: xr.Dataset, margin: float = NEAR_BOUND_MARGIN) -> Finding:
    low, high = T2_BOUNDS
    values = np.concatenate([day[n].values.ravel() for n in ("T2_min", "T2_max") if n in day] or [np.array([])])
    near = int(np.sum((values < low + margin) | (values > high - margin)))
    return Finding(near == 0, f"{near} daily T2 extremes within {margin} K of a bound", near)


BLOCKING: dict[str, Callable[[xr.Dataset], Finding]] = {
    "hours_complete": hours_complete,
    "no_all_nan_variable": no_all_nan_variable,
    "t2_plausible": t2_plausible,
    "dewpoint_below_temperature": dewpoint_below_temperature,
    "non_negative_water": non_negative_water,
}
WARNINGS: dict[str, Callable[[xr.Dataset], Finding]] = {"nan_share": nan_share, "t2_near_bounds": t2_near_bounds}


def _fields(day: xr.Dataset) -> list[str]:
    return [name for name, v in day.data_vars.items() if {"y", "x"} <= set(v.dims)]
