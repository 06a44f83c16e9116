"""The daily windows and reductions, against a direct loop over the hours."""

from __future__ import annotations

import tracemalloc
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from gnt_assets.conus404.aggregation import SourceWindowError, aggregate_day, bucket_total
from gnt_assets.conus404.local import CRS_ATTRS
from gnt_assets.conus404.variables import CATALOG, VariableConfigError, resolve_variables

VARIABLES = ["T2", "U10", "V10", "PREC_ACC_NC", "ACSWDNB"]


def hourly_dataset(seed: int, start: datetime, hours: int, drop: set[int], grid: tuple[int, int] = (2, 3)) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (hours, *grid)
    times = [start + timedelta(hours=h) for h in range(hours)]
    keep = [i for i in range(hours) if i not in drop]
    data = {
        "T2": 250 + 60 * rng.random(shape),
        "U10": rng.normal(0, 5, shape),
        "V10": rng.normal(0, 5, shape),
        "PREC_ACC_NC": rng.gamma(0.3, 2.0, shape),
        "ACSWDNB": np.cumsum(rng.random(shape) * 3.6e6, axis=0),
    }
    ds = xr.Dataset(
        {k: (("time", "y", "x"), v.astype("float32")[keep]) for k, v in data.items()},
        coords={"time": pd.DatetimeIndex([times[i] for i in keep]).values, "y": np.arange(grid[0], dtype=float),
                "x": np.arange(grid[1], dtype=float)},
    )
    ds["crs"] = ((), 0, CRS_ATTRS)
    return ds


def by_loop(ds: xr.Dataset, day: date, offset: int) -> dict[str, np.ndarray]:
    """The definition, one hour at a time."""
    midnight = datetime(day.year, day.month, day.day)

    def at(name, hour):
        return ds[name].sel(time=np.datetime64(midnight + timedelta(hours=hour), "ns")).values.astype("float64")

    t2 = [at("T2", h) for h in range(24)]
    speeds = [np.hypot(at("U10", h), at("V10", h)) for h in range(24)]
    rain = np.zeros((2, 3))
    for h in range(offset, offset + 24):
        rain += at("PREC_ACC_NC", h)
    return {
        "T2": sum(t2) / 24, "T2_min": np.min(t2, axis=0), "T2_max": np.max(t2, axis=0),
        "WIND10": sum(speeds) / 24, "PREC_ACC_NC": rain,
        "U10": sum(at("U10", h) for h in range(24)) / 24, "V10": sum(at("V10", h) for h in range(24)) / 24,
        "ACSWDNB": at("ACSWDNB", offset + 23) - at("ACSWDNB", offset - 1),
    }


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), offset=st.sampled_from([0, 1]), day_index=st.integers(1, 2))
def test_daily_values_match_a_loop_over_hours(seed, offset, day_index):
    ds = hourly_dataset(seed, datetime(2001, 2, 27), hours=4 * 24 + 1, drop=set())
    day = date(2001, 2, 27) + timedelta(days=day_index)
    result = aggregate_day(ds, day, resolve_variables(VARIABLES), accumulation_offset=offset)
    expected = by_loop(ds, day, offset)
    assert set(result.fields) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(result.fields[name], values, rtol=2e-5, atol=1e-3, err_msg=name)
    assert result.hours_found == 24 and result.missing_hours == []


def whole_day(ds: xr.Dataset, day: date, offset: int) -> dict[str, np.ndarray]:
    """The reductions over each variable's whole day at once, as aggregate_day computed them before it read hour by hour."""
    midnight = np.datetime64(datetime(day.year, day.month, day.day), "ns")

    def window(name, hours):
        return ds[name].sel(time=slice(midnight + np.timedelta64(hours[0], "h"), midnight + np.timedelta64(hours[-1], "h"))).values

    t2, u10, v10 = (window(name, range(24)) for name in ("T2", "U10", "V10"))
    steps = window("ACSWDNB", range(offset - 1, offset + 24)).astype(np.float64)
    before, after = steps[:-1], steps[1:]
    reset = after < before * 0.5
    return {
        "T2": t2.mean(axis=0, dtype=np.float32), "T2_min": t2.min(axis=0), "T2_max": t2.max(axis=0),
        "U10": u10.mean(axis=0, dtype=np.float32), "V10": v10.mean(axis=0, dtype=np.float32),
        "WIND10": np.sqrt(u10 * u10 + v10 * v10).mean(axis=0, dtype=np.float32),
        "PREC_ACC_NC": window("PREC_ACC_NC", range(offset, offset + 24)).sum(axis=0, dtype=np.float32),
        "ACSWDNB": np.where(reset, after, after - before).sum(axis=0).astype(np.float32),
    }


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), offset=st.sampled_from([0, 1]), restart_at=st.integers(24, 48))
def test_hour_by_hour_reduction_is_bit_for_bit_the_whole_day_one(seed, offset, restart_at):
    """Reading an hour at a time keeps every addition, in float32 (float64 for buckets), in the same order."""
    ds = hourly_dataset(seed, datetime(2001, 2, 28), hours=3 * 24 + 1, drop=set(), grid=(17, 23))
    bucket = ds["ACSWDNB"].values
    bucket[restart_at:, :8] -= bucket[restart_at - 1, :8] - 1e3  # these cells restart from about 0 (water year)
    ds["T2"].values[29:31, 0, :3] = np.nan  # a gap in two hours of the day
    result = aggregate_day(ds, date(2001, 3, 1), resolve_variables(VARIABLES), accumulation_offset=offset)
    for name, values in whole_day(ds, date(2001, 3, 1), offset).items():
        np.testing.assert_array_equal(result.fields[name], values, err_msg=name)
    assert result.counts["ACSWDNB_resets"] == (8 * 23 if offset - 1 < restart_at - 24 < offset + 24 else 0)


def test_a_day_is_reduced_holding_hours_not_whole_days(tmp_path):
    """The 1015 x 1367 day fits beside other work: besides its outputs, aggregate_day allocates less than one
    variable's day (it held every variable's day, the bucket's in float64 several times over)."""
    grid = (200, 200)
    hourly_dataset(1, datetime(2001, 3, 1), hours=2 * 24 + 1, drop=set(), grid=grid).chunk({"time": 1}).to_zarr(tmp_path / "hourly.zarr", consolidated=False)
    source = xr.open_zarr(tmp_path / "hourly.zarr", consolidated=False, chunks=None)  # as the source resources open it
    tracemalloc.start()
    try:
        result = aggregate_day(source, date(2001, 3, 1), resolve_variables(VARIABLES))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = sum(array.nbytes for array in result.fields.values())
    assert peak < outputs + 24 * grid[0] * grid[1] * 4


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), dropped=st.sets(st.integers(24, 47), min_size=1, max_size=5))
def test_missing_hours_are_counted_not_invented(seed, dropped):
    ds = hourly_dataset(seed, datetime(2001, 3, 1), hours=3 * 24 + 1, drop=dropped)
    result = aggregate_day(ds, date(2001, 3, 2), resolve_variables(["T2"]), accumulation_offset=1)
    assert result.hours_found == 24 - len(dropped)
    assert len(result.missing_hours) == len(dropped)
    kept = [h for h in range(24, 48) if h not in dropped]
    t2 = ds["T2"].sel(time=[np.datetime64(datetime(2001, 3, 1) + timedelta(hours=h), "ns") for h in kept]).values
    np.testing.assert_allclose(result.fields["T2"], t2.astype("float64").mean(axis=0), rtol=2e-6)


def test_the_hytest_window_ends_at_midnight_of_the_next_day():
    ds = hourly_dataset(1, datetime(2001, 3, 1), hours=2 * 24, drop=set())  # ends 2001-03-02T23:00
    with pytest.raises(SourceWindowError, match="outside the source window"):
        aggregate_day(ds, date(2001, 3, 2), resolve_variables(["PREC_ACC_NC"]), accumulation_offset=1)
    aggregate_day(ds, date(2001, 3, 2), resolve_variables(["PREC_ACC_NC"]), accumulation_offset=0)


def test_unknown_and_absent_variables_are_named():
    with pytest.raises(VariableConfigError, match="RAINNC"):
        resolve_variables(["T2", "RAINNC"])
    with pytest.raises(VariableConfigError, match="Q2"):
        resolve_variables(["T2", "Q2"], available={"T2"})
    assert {v.kind for v in CATALOG.values()} == {"instant", "hourly_accumulation", "bucket_accumulation"}


@settings(max_examples=60, deadline=None)
@given(
    increments=st.lists(st.floats(0, 4e6, allow_nan=False), min_size=2, max_size=25),
    start=st.floats(1e8, 1e10, allow_nan=False),
    restart_at=st.one_of(st.none(), st.integers(1, 24)),
    wrap=st.booleans(),
)
def test_bucket_totals_are_differenced_across_resets(increments, start, restart_at, wrap):
    """A run accumulation that restarts from 0 (water year) or wraps at WRF's bucket_J still yields what
    accumulated over the window, and the reset is counted."""
    bucket = 1e9
    if wrap:  # the stored value is the accumulation modulo the bucket size
        series = np.mod(start % bucket + np.cumsum([0.0, *increments[1:]]), bucket)
        reset = bool(np.any(np.diff(series) < 0))
    else:
        series, reset = [start], False
        for step, increment in enumerate(increments[1:], start=1):
            restarted = step == restart_at
            reset |= restarted
            series.append(increment if restarted else series[-1] + increment)
    total, cells = bucket_total(np.asarray(series, dtype=np.float64)[:, None, None], bucket_size=bucket if wrap else None)
    np.testing.assert_allclose(total[0, 0], sum(increments[1:]), rtol=1e-5, atol=1.0)
    assert cells == int(reset)


def test_a_restarted_bucket_is_not_a_negative_total():
    # 2,000 MJ accumulated, then a restart at the water year: 3 MJ since
    series = np.array([2.0e9, 2.0e9 + 1e6, 1e6, 3e6], dtype=np.float32)[:, None, None]
    total, cells = bucket_total(series)
    assert cells == 1 and total[0, 0] == pytest.approx(1e6 + 1e6 + 2e6, rel=1e-4)  # float32 at 2e9: steps of 256 J


def test_the_record_s_last_day_is_aggregated_from_its_23_hours():
    """2022-09-30 needs 2022-10-01T00 under the HyTEST window; the record ends at 23:00, so sums cover 23 hours."""
    ds = hourly_dataset(3, datetime(2022, 9, 29), hours=2 * 24, drop=set())  # ends 2022-09-30T23:00
    result = aggregate_day(ds, date(2022, 9, 30), resolve_variables(VARIABLES), accumulation_offset=1)
    assert result.hours_found == 23
    rain = ds["PREC_ACC_NC"].sel(time=slice("2022-09-30T01:00", "2022-09-30T23:00")).values.astype("float64").sum(axis=0)
    np.testing.assert_allclose(result.fields["PREC_ACC_NC"], rain, rtol=2e-5)
    t2 = ds["T2"].sel(time=slice("2022-09-30T00:00", "2022-09-30T23:00")).values.astype("float64").mean(axis=0)
    np.testing.assert_allclose(result.fields["T2"], t2, rtol=2e-6)
    # any other day still needs its whole window
    short = hourly_dataset(3, datetime(2021, 9, 29), hours=2 * 24, drop=set())
    with pytest.raises(SourceWindowError, match="outside the source window"):
        aggregate_day(short, date(2021, 9, 30), resolve_variables(VARIABLES), accumulation_offset=1)
