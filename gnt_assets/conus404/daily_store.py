"""The one daily CONUS404 zarr store: its layout, one day's region, and per-day summaries.

The store spans every partition day (1979-10-01 .. 2022-09-30) with time
chunk 1, so each day is its own region and concurrent days never share a chunk.
The source's Lambert conformal projection travels as the ``spatial_ref``
coordinate (odc-geo), so ``xr.open_zarr(path).odc.geobox`` is the source grid.
"""

from __future__ import annotations

from datetime import date

import dask.array as da
import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import pandas as pd
import pandera.pandas as pa
import xarray as xr
from upath import UPath

from gnt_assets.conus404.aggregation import WIND_SPEED_ATTRS, DailyFields, output_attrs, resets_name, source_crs
from gnt_assets.conus404.variables import WIND_SPEED, SourceVariable
from gnt_assets.core.atomic import local_lock
from gnt_assets.core.zarr_regions import (
    StoreLayout,
    _store_args,
    create_store,
    open_store,
    regions_along,
    require_complete,
    store_exists,
)

SOURCE_HOURS = "source_hours"
STORE_START = date(1979, 10, 1)  # partitions.conus404_day starts here; the store's time index 0


def output_names(variables: list[SourceVariable]) -> dict[str, dict[str, str]]:
    """Daily variable name -> CF attributes, in store order."""
    names: dict[str, dict[str, str]] = {}
    for variable in variables:
        for name in (variable.name, "T2_min", "T2_max") if variable.name == "T2" else (variable.name,):
            names[name] = output_attrs(variable, name)
    if {"U10", "V10"} <= {v.name for v in variables}:
        names[WIND_SPEED] = WIND_SPEED_ATTRS
    return names


def _grid_coords(hourly: xr.Dataset) -> dict:
    coords = {"x": hourly["x"].values, "y": hourly["y"].values}
    return {name: (name, values, hourly[name].attrs) for name, values in coords.items()}


def daily_template(hourly: xr.Dataset, variables: list[SourceVariable], start: str, end: str) -> xr.Dataset:
    """Lazy, empty dataset over every day in [start, end) with the source grid and projection.

    One dask chunk per variable (never computed: only metadata is written), so
    creating the 15,706-day store does not build a task per zarr chunk.
    """
    days = pd.date_range(start, end, freq="D", inclusive="left")
    ny, nx = hourly.sizes["y"], hourly.sizes["x"]
    data_vars = {
        name: (("time", "y", "x"), da.full((len(days), ny, nx), np.nan, dtype="float32", chunks=-1), attrs)
        for name, attrs in output_names(variables).items()
    }
    data_vars[SOURCE_HOURS] = (("time",), da.zeros(len(days), dtype="int16", chunks=-1),
                               {"long_name": "hourly source steps found for the day", "units": "1"})
    for variable in variables:
        if variable.kind == "bucket_accumulation":
            data_vars[resets_name(variable.name)] = (
                ("time",), da.zeros(len(days), dtype="int32", chunks=-1),
                {"long_name": f"cells where the {variable.name} bucket reset during the day (differenced across)", "units": "1"})
    template = xr.Dataset(data_vars, coords={"time": ("time", days.values), **_grid_coords(hourly)},
                          attrs={"title": "CONUS404 daily", "source": "CONUS404 hourly (USGS/NCAR WRF), aggregated by gnt_assets",
                                 "Conventions": "CF-1.8"})
    return template.odc.assign_crs(source_crs(hourly))


def store_encoding(template: xr.Dataset) -> dict:
    ny, nx = template.sizes["y"], template.sizes["x"]
    return {name: {"chunks": (1, ny, nx) if template[name].ndim == 3 else (1,)} for name in template.data_vars}


def day_dataset(hourly: xr.Dataset, fields: DailyFields) -> xr.Dataset:
    """One day as a region of the store: time length 1, same names and attributes."""
    data_vars = {name: (("time", "y", "x"), array[np.newaxis].astype("float32", copy=False), fields.attrs[name])
                 for name, array in fields.fields.items()}
    data_vars[SOURCE_HOURS] = (("time",), np.array([fields.hours_found], dtype="int16"), {})
    for name, count in fields.counts.items():
        data_vars[name] = (("time",), np.array([count], dtype="int32"), {})
    time = pd.DatetimeIndex([pd.Timestamp(fields.day)]).values
    day = xr.Dataset(data_vars, coords={"time": ("time", time), **_grid_coords(hourly)})
    return day.odc.assign_crs(source_crs(hourly))


def ensure_store(path: UPath, template: xr.Dataset) -> list[str]:
    """Create the store, or add the template's variables it lacks (schema evolution); returns those added.

    A variable added to the configuration becomes a new, empty array over every day of the
    existing store (metadata only); the days already stored keep their data and can be backfilled.
    """
    added: list[str] = []
    if store_exists(path):
        with local_lock(path):  # two runs adding the same variable: the second finds it there
            existing = set(open_store(path).data_vars)
            added = [name for name in template.data_vars if name not in existing]
            if added:
                new = template[added].drop_vars(list(template.coords))
                new.attrs = {}
                new.to_zarr(**_store_args(path), mode="a", compute=False, consolidated=False, zarr_format=3,
                            encoding=store_encoding(new), safe_chunks=False)
    create_store(path, template, encoding=store_encoding(template))
    return added


def zarr_target(path: UPath):
    """What xarray opens for ``path``: a plain path locally, an fsspec mapper (with its options) remotely."""
    return path.path if path.protocol in ("", "file", "local") else path.fs.get_mapper(path.path)


def open_daily(path: UPath) -> xr.Dataset:
    return open_store(path)


def read_day(path: UPath, day: date) -> xr.Dataset:
    """One stored day, loaded (small: one field per variable)."""
    stamp = np.datetime64(day, "ns")
    # without dask: slicing a 15,706-chunk dask array costs more than reading the day
    stored = xr.open_zarr(zarr_target(path), consolidated=False, zarr_format=3, chunks=None).sel(time=slice(stamp, stamp))
    if stored.sizes["time"] != 1:
        raise KeyError(f"conus404 daily store {path} has no day {day}")
    require_days_complete(path, [day])
    return stored.load()


def require_days_complete(path: UPath, days: list[date]) -> None:
    """Refuse days whose region has no completion marker (interrupted or still being written), naming them."""
    layout = StoreLayout.read(path)
    labels = {str(d): [np.datetime64(d, "ns")] for d in days}
    require_complete(path, regions_along(path, "time", labels, layout), what="conus404_daily day", layout=layout)


def day_objects(path: UPath, day: date, names: list[str]) -> list[UPath]:
    """The chunk objects holding ``day`` (zarr v3 keys ``<name>/c/<day index>/...``), for files/bytes metadata."""
    index = (day - STORE_START).days
    return [path / name / "c" / str(index) for name in names]


SUMMARY_SCHEMA = pa.DataFrameSchema(
    {
        "day": pa.Column("datetime64[ns]"),
        "variable": pa.Column(str),
        "units": pa.Column(str),
        "minimum": pa.Column(float, nullable=True),
        "mean": pa.Column(float, nullable=True),
        "maximum": pa.Column(float, nullable=True),
        "nan_count": pa.Column(int, pa.Check.ge(0)),
        "cells": pa.Column(int, pa.Check.gt(0)),
    },
    checks=[pa.Check(lambda df: (df["minimum"] <= df["maximum"]) | df["minimum"].isna(), name="min_le_max")],
    unique=["day", "variable"],
    strict=True,
)


def day_summary(day: xr.Dataset) -> pd.DataFrame:
    """Per variable of one stored day: min, mean, max and NaN count (NaN-aware), validated."""
    rows = []
    for name, variable in day.data_vars.items():
        if {"y", "x"} - set(variable.dims):
            continue
        values = variable.values.astype("float64")
        finite = np.isfinite(values)
        rows.append({
            "day": pd.Timestamp(day["time"].values[0]),
            "variable": name,
            "units": variable.attrs.get("units", ""),
            "minimum": float(values[finite].min()) if finite.any() else np.nan,
            "mean": float(values[finite].mean()) if finite.any() else np.nan,
            "maximum": float(values[finite].max()) if finite.any() else np.nan,
            "nan_count": int((~finite).sum()),
            "cells": int(values.size),
        })
    return SUMMARY_SCHEMA.validate(pd.DataFrame(rows))
