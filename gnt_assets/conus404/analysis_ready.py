"""The analysis-ready copy: chosen days of the daily store rechunked for time-series reads.

HyTEST's layout is 36 days x 350 x 350; on smaller grids chunks shrink to the
grid. ``rechunker`` does not support zarr 3, so xarray + dask do the copy on
the compute resource's cluster, into a temporary store renamed into place
(readers see the old copy or the new one, never a half-written one).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import xarray as xr
from upath import UPath

from gnt_assets.conus404.daily_store import open_daily, zarr_target
from gnt_assets.core.atomic import temp_sibling

TARGET_CHUNKS = {"time": 36, "y": 350, "x": 350}


def target_chunks(sizes: dict[str, int]) -> dict[str, int]:
    return {dim: min(size, sizes[dim]) for dim, size in TARGET_CHUNKS.items()}


def rechunk_days(daily: UPath, days: list[date], target: UPath, client) -> dict[str, int]:
    """Copy ``days`` (sorted) from ``daily`` to ``target`` with time-series chunks; returns the chunks."""
    source = open_daily(daily).sel(time=[np.datetime64(d, "ns") for d in days])
    chunks = target_chunks(dict(source.sizes))
    copy = source.chunk(chunks)
    for variable in copy.variables.values():
        variable.encoding.clear()
    copy.attrs["days"] = [str(d) for d in days]
    copy.attrs["description"] = "analysis-ready CONUS404 daily copy; attrs.days lists the days it contains"
    staging = temp_sibling(target)
    job = copy.to_zarr(zarr_target(staging), mode="w", zarr_format=3, consolidated=False, compute=False)
    client.compute(job).result()
    _replace(staging, target)
    return chunks


def _replace(staging: UPath, target: UPath) -> None:
    """Swap the finished copy in; the previous one is removed only after the new one is in place."""
    old = None
    if target.exists():
        old = temp_sibling(target)
        target.fs.mv(target.path, old.path, recursive=True)
    staging.fs.mv(staging.path, target.path, recursive=True)
    if old is not None:
        old.fs.rm(old.path, recursive=True)


def contained_days(target: UPath) -> list[str]:
    return list(xr.open_zarr(zarr_target(target), consolidated=False).attrs.get("days", []))


def last_day_field(target: UPath, name: str) -> np.ndarray | None:
    """``name`` on the copy's last day (for its quick look), or None if the copy lacks the variable."""
    copy = xr.open_zarr(zarr_target(target), consolidated=False)
    return copy[name].isel(time=-1).values if name in copy else None

