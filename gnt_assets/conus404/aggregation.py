"""Hourly CONUS404 fields -> one day: which hours count, and how they reduce.

The window convention is ``accumulation_offset`` hours after midnight: 1 is the
USGS HyTEST convention (accumulations over 01:00 D .. 00:00 D+1), 0 is the
seed's (00:00 .. 23:00). Instantaneous fields always use 00:00 .. 23:00.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pyproj
import xarray as xr

from gnt_assets.conus404.variables import WIND_SPEED, SourceVariable
from gnt_assets.core.errors import InputError

HOURS = 24
RECORD_LAST_DAY = date(2022, 9, 30)
RECORD_END = np.datetime64("2022-09-30T23:00", "ns")  # CONUS404's last hourly step
RESET_DROP = 0.5  # a bucket falling below half its previous value restarted (water year, bucket wrap)


def resets_name(name: str) -> str:
    """The per-day variable counting the cells where ``name``'s bucket reset during the day."""
    return f"{name}_resets"


def bucket_total(series: np.ndarray, bucket_size: float | None = None) -> tuple[np.ndarray, int]:
    """What accumulated over ``series`` (hours first, from the step before the window), across resets.

    A run accumulation only grows; a step that falls below ``RESET_DROP`` of the one before is a reset:
    the bucket restarted from 0 (CONUS404's water-year restarts), so that step's increment is its
    value, or it wrapped at ``bucket_size`` (WRF ``bucket_J``), so the increment is value + size - previous.
    Returns the totals (float32) and the number of cells with at least one reset.
    """
    values = series.astype(np.float64)
    before, after = values[:-1], values[1:]
    reset = after < before * RESET_DROP
    restarted = after if bucket_size is None else after + bucket_size - before
    total = np.where(reset, restarted, after - before).sum(axis=0)
    return total.astype(np.float32), int(reset.any(axis=0).sum())


def hour_offsets(variable: SourceVariable, accumulation_offset: int = 1) -> range:
    """Hours after 00:00 of the day that the daily value of ``variable`` reads."""
    if variable.kind == "instant":
        return range(HOURS)
    if variable.kind == "hourly_accumulation":
        return range(accumulation_offset, accumulation_offset + HOURS)
    # bucket: the step before the window start and the window end
    return range(accumulation_offset - 1, accumulation_offset + HOURS)


def reduce_hours(variable: SourceVariable, hourly: np.ndarray) -> dict[str, np.ndarray]:
    """Daily fields from ``hourly`` (hours first, as read by ``hour_offsets``), float32."""
    if variable.kind == "instant":
        out = {variable.name: hourly.mean(axis=0, dtype=np.float32)}
        if variable.name == "T2":
            out["T2_min"] = hourly.min(axis=0)
            out["T2_max"] = hourly.max(axis=0)
        return out
    if variable.kind == "hourly_accumulation":
        return {variable.name: hourly.sum(axis=0, dtype=np.float32)}
    total, resets = bucket_total(hourly)
    return {variable.name: total, resets_name(variable.name): np.int32(resets)}


def wind_speed(u10: np.ndarray, v10: np.ndarray) -> np.ndarray:
    """Daily mean of the hourly speed (not the speed of the mean vector, which cancels turning winds)."""
    return np.sqrt(u10 * u10 + v10 * v10).mean(axis=0, dtype=np.float32)


WIND_SPEED_ATTRS = {
    "units": "m s-1",
    "long_name": "daily mean wind speed at 10 m, sqrt(U10^2 + V10^2) of each hour",
    "cell_methods": "time: mean",
    "grid_mapping": "spatial_ref",
}


def output_attrs(variable: SourceVariable, name: str) -> dict[str, str]:
    method = {
        "instant": "time: mean",
        "hourly_accumulation": "time: sum",
        "bucket_accumulation": "time: sum (last minus first of the run accumulation)",
    }[variable.kind]
    label = f"daily {variable.description.lower()}"
    if name == "T2_min":
        method, label = "time: minimum", "daily minimum temp at 2 m"
    elif name == "T2_max":
        method, label = "time: maximum", "daily maximum temp at 2 m"
    return {"units": variable.units, "long_name": label, "cell_methods": method, "grid_mapping": "spatial_ref"}


@dataclass
class DailyFields:
    """One day's reduced fields plus what the source held for it."""

    day: date
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)
    hours_found: int = HOURS
    counts: dict[str, int] = field(default_factory=dict)  # per-day scalars (bucket reset cells)
    missing_hours: list[str] = field(default_factory=list)


class SourceWindowError(InputError, LookupError):
    pass


def _surface(array: xr.DataArray) -> xr.DataArray:
    """The field on (time, y, x): a vertical dimension (e.g. a 3-D ``Z``) is read at its lowest level."""
    extra = [dim for dim in array.dims if dim not in ("time", "y", "x")]
    return array.isel(dict.fromkeys(extra, 0)) if extra else array


def _timestamps(day: date, offsets: range) -> list[np.datetime64]:
    start = datetime(day.year, day.month, day.day)
    return [np.datetime64(start + timedelta(hours=h), "ns") for h in offsets]


def source_crs(hourly: xr.Dataset) -> pyproj.CRS:
    """The Lambert conformal projection CONUS404 stores as its ``crs`` variable (CF grid mapping)."""
    return pyproj.CRS.from_cf(hourly["crs"].attrs)


def aggregate_day(
    hourly: xr.Dataset, day: date, variables: list[SourceVariable], accumulation_offset: int = 1, window_hint: str = ""
) -> DailyFields:
    """Read ``variables`` one at a time (only this day's hours) and reduce them to daily fields.

    Missing hours are not invented: the day is reduced over what exists and
    ``hours_found``/``missing_hours`` say what was absent, for the checks. The
    record's last day (2022-09-30) has no 00:00 of the next day: its
    accumulations are reduced over the 23 hours that exist (``hours_found`` 23,
    a WARN finding), deliberately rather than failing for ever.
    """
    times = hourly.indexes["time"]
    first, last = times[0], times[-1]
    result = DailyFields(day=day)
    hourly_uv: dict[str, np.ndarray] = {}
    for variable in variables:
        wanted = _timestamps(day, hour_offsets(variable, accumulation_offset))
        if day == RECORD_LAST_DAY and last == RECORD_END:
            wanted = [t for t in wanted if t <= RECORD_END]
        if wanted[0] < first or wanted[-1] > last:
            raise SourceWindowError(
                f"conus404 day {day}: {variable.name} needs {str(wanted[0])[:16]}..{str(wanted[-1])[:16]}, "
                f"outside the source window {str(first)[:16]}..{str(last)[:16]}{window_hint}"
            )
        present = [t for t in wanted if t in times]
        absent = [str(t)[:16] for t in wanted if t not in times]
        if not present:
            raise SourceWindowError(f"conus404 day {day}: the source has none of {variable.name}'s hourly steps")
        if variable.kind == "bucket_accumulation":
            # every step, not only the ends: a reset inside the window must be seen to be differenced across
            if all(t in times for t in wanted):
                values = hourly[variable.name].sel(time=wanted).values
            else:  # a missing step could hide a reset: the day's total is unknowable
                values = np.full((2, hourly.sizes["y"], hourly.sizes["x"]), np.nan, np.float32)
            if day == RECORD_LAST_DAY and len(wanted) < HOURS + 1:
                result.hours_found = min(result.hours_found, len(wanted) - 1)
        else:
            values = _surface(hourly[variable.name]).sel(time=slice(present[0], present[-1])).values  # only absent steps lie between
            result.hours_found = min(result.hours_found, len(present))
            result.missing_hours = sorted(set(result.missing_hours) | set(absent))
        for name, array in reduce_hours(variable, values).items():
            if np.ndim(array) == 0:
                result.counts[name] = int(array)
                continue
            result.fields[name] = array
            result.attrs[name] = output_attrs(variable, name)
        if variable.name in ("U10", "V10"):
            hourly_uv[variable.name] = values
        del values
    if len(hourly_uv) == 2 and hourly_uv["U10"].shape == hourly_uv["V10"].shape:
        result.fields[WIND_SPEED] = wind_speed(hourly_uv["U10"], hourly_uv["V10"])
        result.attrs[WIND_SPEED] = WIND_SPEED_ATTRS
    return result
