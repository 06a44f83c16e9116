"""A small, deterministic stand-in for the CONUS404 hourly zarr store.

Same variable names, units and attributes, the same Lambert conformal ``crs``
variable, ``time`` hourly and dims ``(time, y, x)`` with one chunk per hour, on
a coarse grid that spans the real domain. Each hour's values depend only on
its timestamp, so any window reproduces the same numbers. ``faults`` corrupt
chosen days the ways real sources go wrong (a missing hour, an all-NaN field,
impossible temperatures), for the tests and the demo.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import pyproj
import xarray as xr
from upath import UPath

from gnt_assets.conus404.variables import CATALOG

# WRF's CONUS404 projection (cen_lat 39.100006, cen_lon -97.9, true latitudes 30/50, sphere R=6370 km).
CRS_ATTRS = {
    "grid_mapping_name": "lambert_conformal_conic",
    "standard_parallel": [30.0, 50.0],
    "longitude_of_central_meridian": -97.9,
    "latitude_of_projection_origin": 39.100006,
    "false_easting": 0.0,
    "false_northing": 0.0,
    "earth_radius": 6370000.0,
}
FULL_SHAPE = (1015, 1367)  # south_north, west_east at 4 km
FULL_SPACING = 4000.0
FAULTS = ("missing_hour", "nan_field", "impossible_temperature")


def grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre x/y (metres) of a ``shape`` grid spanning the real 1015 x 1367 domain."""
    ny, nx = shape
    width, height = FULL_SHAPE[1] * FULL_SPACING, FULL_SHAPE[0] * FULL_SPACING
    dx, dy = width / nx, height / ny
    x = -width / 2 + dx * (np.arange(nx) + 0.5)
    y = -height / 2 + dy * (np.arange(ny) + 0.5)
    return x, y


def hour_fields(time: pd.Timestamp, lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> dict[str, np.ndarray]:
    """Plausible instantaneous and hourly fields for one timestamp (seeded by the timestamp)."""
    rng = np.random.default_rng(int(time.value // 3_600_000_000_000) & 0xFFFFFFFF)
    shape = lat.shape
    day_of_year = time.dayofyear
    local_hour = (time.hour + lon / 15.0) % 24
    season = np.cos(2 * np.pi * (day_of_year - 200) / 365.25)
    t2 = 288.0 - 0.6 * (lat - 38) + 10 * season - 0.0065 * elevation + 6 * np.sin(2 * np.pi * (local_hour - 9) / 24)
    t2 = t2 + rng.normal(0, 0.5, shape)
    td2 = t2 - 3.0 - 4.0 * rng.random(shape)
    psfc = 101325.0 * np.exp(-elevation / 8000.0)
    e = 611.2 * np.exp(17.67 * (td2 - 273.15) / (td2 - 29.65))
    q2 = 0.622 * e / (psfc - 0.378 * e)
    u10 = 3 + 2 * np.sin(lat / 5 + time.hour / 4) + rng.normal(0, 1, shape)
    v10 = 1 + 2 * np.cos(lon / 7 + time.hour / 5) + rng.normal(0, 1, shape)
    sun = np.clip(np.sin(np.pi * (local_hour - 6) / 12), 0, None)
    swdown = 900 * sun * (0.75 + 0.25 * season)
    storm = np.clip(np.sin(lon / 3 + day_of_year / 2) * np.cos(lat / 2 + time.hour / 6) + rng.normal(0, 0.2, shape), 0, None)
    rain = np.where(storm > 0.6, 4.0 * (storm - 0.6), 0.0)
    lai = np.clip(1.5 + 2.5 * (0.5 + 0.5 * season) * np.cos(np.radians(lat - 35)), 0, 6)
    return {
        "T2": t2, "TD2": td2, "Q2": q2, "PSFC": psfc, "U10": u10, "V10": v10, "LAI": lai,
        "SWDOWN": swdown, "ACRAINLSM": rain * 0.98, "PREC_ACC_NC": rain,
    }


def generate_hourly(
    start: date, days: int, shape: tuple[int, int] = (36, 48), faults: dict[str, str] | None = None
) -> xr.Dataset:
    """The hourly dataset from 00:00 of ``start`` to 00:00 after ``days`` days (inclusive)."""
    faults = faults or {}
    for day, fault in faults.items():
        if fault not in FAULTS:
            raise ValueError(f"conus404 local source: fault {fault!r} for {day} is not one of {FAULTS}")
    x, y = grid(shape)
    xx, yy = np.meshgrid(x, y)
    lon, lat = pyproj.Transformer.from_crs(pyproj.CRS.from_cf(CRS_ATTRS), "EPSG:4326", always_xy=True).transform(xx, yy)
    elevation = 2500 * np.exp(-(((lon + 110) / 8) ** 2)) + 300 * (1 + np.sin(lat / 3))
    origin = datetime(start.year, start.month, start.day)
    times = [pd.Timestamp(origin + timedelta(hours=h)) for h in range(days * 24 + 1)]
    times = [t for t in times if not (faults.get(str(t.date())) == "missing_hour" and t.hour == 12)]
    stacks: dict[str, list[np.ndarray]] = {name: [] for name in CATALOG}
    bucket = np.zeros(shape)
    for t in times:
        fields = hour_fields(t, lat, lon, elevation)
        fault = faults.get(str(t.date()))
        if fault == "nan_field":
            fields["Q2"] = np.full(shape, np.nan)
        elif fault == "impossible_temperature" and t.hour == 15:
            fields["T2"] = fields["T2"] + 120.0
        bucket = bucket + fields["SWDOWN"] * 3600.0
        fields["ACSWDNB"] = bucket
        for name in CATALOG:
            stacks[name].append(fields[name].astype(np.float32))
    data_vars = {
        name: (("time", "y", "x"), np.stack(stacks[name]), {
            "units": v.units, "description": v.description, "grid_mapping": "crs",
            **({"integration_length": "accumulated over prior 60 minutes"} if v.kind == "hourly_accumulation" else {}),
        })
        for name, v in CATALOG.items()
    }
    data_vars["crs"] = ((), np.int32(0), dict(CRS_ATTRS, spatial_ref=pyproj.CRS.from_cf(CRS_ATTRS).to_wkt()))
    return xr.Dataset(
        data_vars,
        coords={
            "time": ("time", pd.DatetimeIndex(times).values),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "lat": (("y", "x"), lat.astype(np.float32), {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": (("y", "x"), lon.astype(np.float32), {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={"title": "CONUS404 hourly (local generated stand-in)", "source": "gnt_assets.local.conus404"},
    )


def store_name(start: date, days: int, shape: tuple[int, int], faults: dict[str, str]) -> str:
    digest = hashlib.sha1(json.dumps([str(start), days, list(shape), sorted(faults.items())]).encode()).hexdigest()[:12]
    return f"conus404-hourly-{digest}.zarr"


def ensure_hourly_store(
    root: UPath, start: date, days: int, shape: tuple[int, int] = (36, 48), faults: dict[str, str] | None = None
) -> UPath:
    """The generated store under ``root``, written once (zarr v2 like the real one, one chunk per hour)."""
    faults = dict(faults or {})
    path = root / store_name(start, days, shape, faults)
    if (path / ".zmetadata").exists():
        return path
    root.mkdir(parents=True, exist_ok=True)
    dataset = generate_hourly(start, days, shape, faults)
    encoding = {name: {"chunks": (1, *shape)} for name in CATALOG}
    temp = root / f".tmp-{path.name}"
    if temp.exists():
        temp.fs.rm(temp.path, recursive=True)
    target = temp.path if temp.protocol in ("", "file", "local") else temp.fs.get_mapper(temp.path)
    dataset.to_zarr(target, mode="w", zarr_format=2, consolidated=True, encoding=encoding)
    if path.exists():  # another process won the race; its store is identical
        temp.fs.rm(temp.path, recursive=True)
    else:
        temp.fs.mv(temp.path, path.path, recursive=True)
    return path
