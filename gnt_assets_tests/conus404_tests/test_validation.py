"""The day rules: shares of offending cells, the seed's tolerances, every lower bound, negative totals."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from gnt_assets.conus404.aggregation import aggregate_day
from gnt_assets.conus404.local import BAD_CELLS, generate_hourly
from gnt_assets.conus404.validation import BLOCKING, Rules, evaluate_day, lower_bounds
from gnt_assets.conus404.variables import CATALOG, resolve_variables

SHAPE = (60, 80)  # 4,800 cells: 0.1 % is 4.8 cells


def stored_day(day: date, faults: dict | None = None, shape=SHAPE) -> xr.Dataset:
    """A day as the store holds it, aggregated from the generated hourly source (WRF-like supersaturation included)."""
    hourly = generate_hourly(day - timedelta(days=1), 2, shape, faults or {})  # a bucket with a day behind it
    fields = aggregate_day(hourly, day, resolve_variables(list(CATALOG)))
    time = pd.DatetimeIndex([pd.Timestamp(day)]).values
    data = {n: (("time", "y", "x"), a[np.newaxis]) for n, a in fields.fields.items()}
    data["source_hours"] = (("time",), np.array([fields.hours_found], "int16"))
    data.update({n: (("time",), np.array([c], "int32")) for n, c in fields.counts.items()})
    return xr.Dataset(data, coords={"time": time})


@pytest.fixture(scope="module")
def clean_day():
    return stored_day(date(2020, 7, 1))


def _blocking_passed(findings) -> bool:
    return all(findings[name].passed for name in BLOCKING)


def test_supersaturated_cells_pass_within_the_seed_dewpoint_tolerance(clean_day):
    excess = clean_day["TD2"].values - clean_day["T2"].values
    assert (excess > 1e-3).sum() > 10  # the old 1e-3 K rule would have blocked this real-looking day
    findings = evaluate_day(clean_day)
    assert _blocking_passed(findings), {n: f.text for n, f in findings.items()}
    assert findings["dewpoint_below_temperature"].passed


def test_a_few_bad_cells_pass_under_the_threshold_with_their_findings():
    findings = evaluate_day(stored_day(date(2020, 7, 2), {"2020-07-02": "few_bad_cells"}))
    t2 = findings["t2_plausible"]
    assert t2.passed and _blocking_passed(findings)
    assert t2.details["T2 high"] == {"cells": BAD_CELLS, "share": round(BAD_CELLS / 4800, 6), "worst": 345.0}
    assert "within the 0.10% threshold" in t2.text
    assert findings["dewpoint_below_temperature"].details["TD2 - T2"]["cells"] == BAD_CELLS
    # the same cells fail the day when the threshold is stricter than their share
    strict = evaluate_day(stored_day(date(2020, 7, 2), {"2020-07-02": "few_bad_cells"}), Rules(max_bad_share=0.0005))
    assert not strict["t2_plausible"].passed and "above the 0.05% threshold" in strict["t2_plausible"].text


def test_every_lower_bound_is_enforced(clean_day):
    bounded = set(lower_bounds())
    assert {"ACSWDNB", "LAI", "SWDOWN", "WIND10", "Q2", "PSFC", "ACRAINLSM", "PREC_ACC_NC"} <= bounded
    for name in sorted(bounded):
        day = clean_day.copy(deep=True)
        values = day[name].values
        values[0, :10, :10] = lower_bounds()[name] - 5.0  # 100 cells, 2 % of the grid
        finding = evaluate_day(day)["lower_bounds"]
        assert not finding.passed and finding.details[name]["cells"] == 100, name
    assert evaluate_day(clean_day)["lower_bounds"].passed


def test_a_negative_bucket_total_is_an_error_even_on_one_cell(clean_day):
    day = clean_day.copy(deep=True)
    day["ACSWDNB"].values[0, 5, 5] = -1.0
    finding = evaluate_day(day)["non_negative_totals"]
    assert not finding.passed and finding.details["ACSWDNB"]["cells"] == 1


def test_a_bucket_reset_is_differenced_across_and_reported():
    reset = stored_day(date(2020, 7, 3), {"2020-07-03": "bucket_reset"})
    plain = stored_day(date(2020, 7, 3))
    np.testing.assert_allclose(reset["ACSWDNB"].values, plain["ACSWDNB"].values, rtol=1e-5)
    findings = evaluate_day(reset)
    assert findings["non_negative_totals"].passed and _blocking_passed(findings)
    assert findings["non_negative_totals"].details["resets"] == {"ACSWDNB": 4800}
    assert "bucket resets handled (cells): {'ACSWDNB': 4800}" in findings["non_negative_totals"].text
