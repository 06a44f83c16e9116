"""Hourly CONUS404 fields -> one day: which hours count, and how they reduce.

The window convention is ``accumulation_offset`` hours after midnight: 1 is the
USGS HyTEST convention (accumulations over 01:00 D .. 00:00 D+1), 0 is the
seed's (00:00 .. 23:00). Instantaneous fields always use 00:00 .. 23:00.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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


class BucketTotal:
    """What a run accumulation gathered over the steps given to ``add`` (from the step before the window), across resets.

    A run accumulation only grows; a step that falls below ``RESET_DROP`` of the one before is a reset:
    the bucket restarted from 0 (CONUS404's water-year restarts), so that step's increment is its
    value, or it wrapped at ``bucket_size`` (WRF ``bucket_J``), so the increment is value + size - previous.
    Steps come one at a time so only two of them are held, in float64 (2e9 J in float32 moves in 256 J steps).
    """

    def __init__(self, bucket_size: float | None = None):
        self.bucket_size = bucket_size
        self.previous: np.ndarray | None = None
        self.sum: np.ndarray | None = None
        self.reset_cells: np.ndarray | None = None

    def add(self, step: np.ndarray) -> None:
        value = step.astype(np.float64)
        if self.previous is not None:
            reset = value < self.previous * RESET_DROP
            restarted = value if self.bucket_size is None else value + self.bucket_size - self.previous
            increment = np.where(reset, restarted, value - self.previous)
            if self.sum is None:
                self.sum, self.reset_cells = increment, reset
            else:
                self.sum += increment
                self.reset_cells |= reset
        self.previous = value

    def total(self) -> np.ndarray:
        """The accumulated totals (float32)."""
        return self.sum.astype(np.float32)

    def resets(self) -> int:
        """How many cells reset at least once."""
        return int(self.reset_cells.sum())


def bucket_total(series: np.ndarray, bucket_size: float | None = None) -> tuple[np.ndarray, int]:
    """``BucketTotal`` over ``series`` (steps first): the totals (float32) and the number of cells with a reset."""
    bucket = BucketTotal(bucket_size)
    for step in series:
        bucket.add(step)
    return bucket.total(), bucket.resets()


def hour_offsets(variable: SourceVariable, accumulation_offset: int = 1) -> range:
    """Hours after 00:00 of the day that the daily value of ``variable`` reads."""
    if variable.kind == "instant":
        return range(HOURS)
    if variable.kind == "hourly_accumulation":
        return range(accumulation_offset, accumulation_offset + HOURS)
    # bucket: the step before the window start and the window end
    return range(accumulation_offset - 1, accumulation_offset + HOURS)


class RunningSum:
    """A float32 sum over hours given one at a time, with the additions of ``sum(axis=0, dtype=float32)`` in the same order.

    With ``extremes`` it also keeps the running minimum and maximum (NaN propagates, as in ``min``/``max``).
    """

    def __init__(self, extremes: bool = False):
        self.extremes = extremes
        self.sum: np.ndarray | None = None
        self.minimum: np.ndarray | None = None
        self.maximum: np.ndarray | None = None
        self.count = 0

    def add(self, hour: np.ndarray) -> None:
        if self.sum is None:
            self.sum = hour.astype(np.float32)
            if self.extremes:
                self.minimum, self.maximum = hour.copy(), hour.copy()
        else:
            np.add(self.sum, hour, out=self.sum, dtype=np.float32)
            if self.extremes:
                np.minimum(self.minimum, hour, out=self.minimum)
                np.maximum(self.maximum, hour, out=self.maximum)
        self.count += 1

    def mean(self) -> np.ndarray:
        self.sum /= self.count
        return self.sum


class DailyReduction:
    """One variable's daily fields (float32), from its hours (as read by ``hour_offsets``) given one at a time."""

    def __init__(self, variable: SourceVariable):
        self.variable = variable
        self.bucket = BucketTotal() if variable.kind == "bucket_accumulation" else None
        self.running = None if self.bucket else RunningSum(extremes=variable.name == "T2")

    def add(self, hour: np.ndarray) -> None:
        (self.bucket or self.running).add(hour)

    def fields(self) -> dict[str, np.ndarray | np.int32]:
        name = self.variable.name
        if self.bucket:
            return {name: self.bucket.total(), resets_name(name): np.int32(self.bucket.resets())}
        if self.variable.kind == "hourly_accumulation":
            return {name: self.running.sum}
        out = {name: self.running.mean()}
        if self.running.extremes:
            out["T2_min"], out["T2_max"] = self.running.minimum, self.running.maximum
        return out


def hourly_speed(u10: np.ndarray, v10: np.ndarray) -> np.ndarray:
    """The hour's wind speed: WIND10 is the daily mean of it (not the speed of the mean vector, which cancels turning winds)."""
    return np.sqrt(u10 * u10 + v10 * v10)


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


def _hours(array: xr.DataArray, start: int, stop: int) -> Iterator[np.ndarray]:
    """Steps ``start`` .. ``stop`` - 1 of ``array`` (time first), read one source time chunk at a time."""
    chunk = max(1, int(array.encoding.get("preferred_chunks", {}).get("time", 1)))
    edge = start
    while edge < stop:
        end = min(stop, (edge // chunk + 1) * chunk)
        yield from array.variable[edge:end].values
        edge = end


def aggregate_day(
    hourly: xr.Dataset, day: date, variables: list[SourceVariable], accumulation_offset: int = 1, window_hint: str = ""
) -> DailyFields:
    """Read ``variables`` one at a time, an hour at a time (only this day's hours), and reduce them to daily fields.

    Only the daily outputs and about one source chunk per variable being read are held, never a
    variable's whole day. Missing hours are not invented: the day is reduced over what exists and
    ``hours_found``/``missing_hours`` say what was absent, for the checks. The
    record's last day (2022-09-30) has no 00:00 of the next day: its
    accumulations are reduced over the 23 hours that exist (``hours_found`` 23,
    a WARN finding), deliberately rather than failing for ever.
    """
    times = hourly.indexes["time"]
    first, last = times[0], times[-1]
    result = DailyFields(day=day)
    steps: dict[str, Iterable[np.ndarray]] = {}
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
        if variable.kind == "bucket_accumulation" and absent:
            # every step is read, not only the ends, so that a reset inside the window is differenced
            # across; a missing step could hide one: the day's total is unknowable
            steps[variable.name] = [np.full((hourly.sizes["y"], hourly.sizes["x"]), np.nan, np.float32)] * 2
        else:  # only absent steps lie between the first and last present one
            steps[variable.name] = _hours(_surface(hourly[variable.name]), times.get_loc(present[0]), times.get_loc(present[-1]) + 1)
        if variable.kind == "bucket_accumulation":
            if day == RECORD_LAST_DAY and len(wanted) < HOURS + 1:
                result.hours_found = min(result.hours_found, len(wanted) - 1)
        else:
            result.hours_found = min(result.hours_found, len(present))
            result.missing_hours = sorted(set(result.missing_hours) | set(absent))
    reductions = {variable.name: DailyReduction(variable) for variable in variables}
    wind = RunningSum() if {"U10", "V10"} <= set(steps) else None
    if wind:  # U10 and V10 share the time index: read together, hour by hour, for the hourly speed
        for u10, v10 in zip(steps.pop("U10"), steps.pop("V10"), strict=True):
            reductions["U10"].add(u10)
            reductions["V10"].add(v10)
            wind.add(hourly_speed(u10, v10))
    for name, hours in steps.items():
        for hour in hours:
            reductions[name].add(hour)
    for variable in variables:
        for name, array in reductions.pop(variable.name).fields().items():
            if np.ndim(array) == 0:
                result.counts[name] = int(array)
                continue
            result.fields[name] = array
            result.attrs[name] = output_attrs(variable, name)
    if wind:
        result.fields[WIND_SPEED] = wind.mean()
        result.attrs[WIND_SPEED] = WIND_SPEED_ATTRS
    return result
