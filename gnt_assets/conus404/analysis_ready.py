"""The analysis-ready copy: the good days of the daily store rechunked for time-series reads, kept up to date by region.

HyTEST's layout is 36 days x 350 x 350; on smaller grids chunks shrink to the
grid. The copy spans the whole record (like the daily store), so a 36-day time
block is a region of whole chunks: adding or changing days rewrites only their
blocks (cost proportional to the new days, not the record). Days that are not
(or no longer) good read NaN with ``source_hours`` 0. A ledger beside the copy
(``analysis_ready.days.json``) lists the days it holds and the daily store's
event cursor it is current to; it is written atomically after the blocks, so a
killed update rewrites its blocks again next time (block writes are idempotent).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from upath import UPath

from gnt_assets.conus404.daily_store import STORE_START, open_daily, require_days_complete, zarr_target
from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.zarr_regions import create_store, store_exists

TARGET_CHUNKS = {"time": 36, "y": 350, "x": 350}


def target_chunks(sizes: dict[str, int]) -> dict[str, int]:
    return {dim: min(size, sizes[dim]) for dim, size in TARGET_CHUNKS.items()}


def ledger_path(target: UPath) -> UPath:
    return target.parent / f"{target.stem}.days.json"


@dataclass
class Ledger:
    days: list[str] = field(default_factory=list)
    cursor: int | None = None  # storage id of the newest daily materialization the copy has seen
    last_blocks: list[int] = field(default_factory=list)  # rewritten by the latest update (checked against the daily store)

    @classmethod
    def read(cls, target: UPath) -> Ledger:
        path = ledger_path(target)
        return cls(**json.loads(path.read_text())) if path.exists() and store_exists(target) else cls()

    def write(self, target: UPath) -> None:
        atomic_write_text(ledger_path(target), json.dumps({"days": self.days, "cursor": self.cursor, "last_blocks": self.last_blocks}))


def block_of(day: date) -> int:
    return (day - STORE_START).days // TARGET_CHUNKS["time"]


def block_days(block: int, size: int) -> slice:
    start = block * TARGET_CHUNKS["time"]
    return slice(start, min(start + TARGET_CHUNKS["time"], size))


def _template(daily: xr.Dataset) -> xr.Dataset:
    """The copy's layout from the daily store's metadata: same variables, attributes, grid; nothing computed."""
    data_vars = {
        name: (v.dims, da.full(v.shape, np.nan if v.dtype.kind == "f" else 0, dtype=v.dtype, chunks=-1), v.attrs)
        for name, v in daily.data_vars.items() if "time" in v.dims
    }
    copy = xr.Dataset(data_vars, coords=daily.coords, attrs=dict(daily.attrs))
    copy.attrs["description"] = "analysis-ready CONUS404 daily copy; analysis_ready.days.json lists the days it holds"
    return copy


def ensure_copy(daily_path: UPath, target: UPath) -> dict[str, int]:
    daily = open_daily(daily_path)
    chunks = target_chunks(dict(daily.sizes))
    template = _template(daily)
    encoding = {name: {"chunks": tuple(chunks[d] for d in v.dims)} for name, v in template.data_vars.items()}
    create_store(target, template, encoding=encoding)
    group = zarr.open_group(zarr_target(target), mode="r+", zarr_format=3)
    for name in template.data_vars:  # a variable added to the daily store joins the copy
        if name not in group:
            template[[name]].drop_vars(list(template.coords)).to_zarr(
                zarr_target(target), mode="a", compute=False, consolidated=False, zarr_format=3,
                encoding={name: encoding[name]}, safe_chunks=False)
    return chunks


def write_block(daily_path: UPath, target: UPath, block: int, days: list[str], only: list[str] | None = None) -> int:
    """Rewrite one 36-day block of the copy from the daily store: ``days`` as stored, the others NaN; with ``only``,
    just those days' slices (zarr rewrites the chunks around them), so appending a day to a held block reads one
    day from the daily store instead of 36. Bytes written. The paths travel to a Dask worker as UPaths,
    with their storage options: as text they would lose an object store's endpoint."""
    daily = xr.open_zarr(zarr_target(daily_path), consolidated=False, zarr_format=3, chunks=None)
    group = zarr.open_group(zarr_target(target), mode="r+", zarr_format=3)
    span = block_days(block, daily.sizes["time"])
    stamps = [str(t)[:10] for t in daily["time"].values[span]]
    parts = [slice(span.start + stamps.index(d), span.start + stamps.index(d) + 1) for d in only] if only is not None else [span]
    # per part, which of its days the copy holds (the others are written as fill)
    kept = [np.isin(stamps[part.start - span.start:part.stop - span.start], days) for part in parts]
    written = 0
    for name, variable in daily.data_vars.items():
        if "time" not in variable.dims or name not in group:
            continue
        for part, keep in zip(parts, kept, strict=True):
            values = variable[part].values  # a whole block: one variable at a time, 36 days x 1015 x 1367 x 4 B = 200 MB
            values[~keep] = np.nan if values.dtype.kind == "f" else 0
            group[name][part] = values
            written += values.nbytes
    return written


# A block with at most this many changed days is patched day by day; more, and it is rewritten whole.
PATCH_DAYS = 4


def days_by_block(days) -> dict[int, list[str]]:
    blocks: dict[int, list[str]] = {}
    for day in sorted(days):
        blocks.setdefault(block_of(date.fromisoformat(day)), []).append(day)
    return blocks


def changed_blocks(ledger: Ledger, good: list[date], changed_days: set[str]) -> tuple[dict[int, list[str]], list[str]]:
    """The blocks to rewrite, each with its touched days (new, re-materialized or no longer good), and the days the copy will list."""
    wanted = sorted(str(d) for d in good)
    held = set(ledger.days)
    touched = (set(wanted) - held) | (held - set(wanted)) | (changed_days & set(wanted))
    return days_by_block(touched), wanted


def update_copy(daily_path: UPath, target: UPath, good: list[date], changed_days: set[str], cursor: int | None,
                client) -> tuple[dict[str, int], Ledger, int]:
    """Bring the copy to ``good`` days; only the blocks holding new or changed days are rewritten (on the cluster)."""
    ledger = Ledger.read(target)
    touched, wanted = changed_blocks(ledger, good, changed_days)
    held_after = days_by_block(wanted)
    patched = {block: days if len(days) <= PATCH_DAYS else None for block, days in touched.items()}  # None: whole block
    listed = set(wanted)
    copied = [d for block, days in patched.items() for d in (days if days is not None else held_after.get(block, [])) if d in listed]
    require_days_complete(daily_path, [date.fromisoformat(d) for d in copied])  # never copy a torn day
    chunks = ensure_copy(daily_path, target)
    futures = [client.submit(write_block, daily_path, target, block, held_after.get(block, []), only, pure=False)
               for block, only in sorted(patched.items())]
    written = sum(client.gather(futures))
    updated = Ledger(days=wanted, cursor=cursor, last_blocks=sorted(touched))
    updated.write(target)
    return chunks, updated, written


def compare_blocks(daily_path: UPath, target: UPath, ledger: Ledger) -> dict[str, int]:
    """Cells that differ between the copy and the daily store on the listed days of the latest update's blocks."""
    daily = xr.open_zarr(zarr_target(daily_path), consolidated=False, zarr_format=3, chunks=None)
    copy = xr.open_zarr(zarr_target(target), consolidated=False, zarr_format=3, chunks=None)
    listed = set(ledger.days)
    differences: dict[str, int] = {}
    for block in ledger.last_blocks:
        span = block_days(block, daily.sizes["time"])
        keep = np.isin([str(t)[:10] for t in daily["time"].values[span]], sorted(listed))
        if not keep.any():
            continue
        for name, variable in daily.data_vars.items():
            if "time" not in variable.dims:
                continue
            if name not in copy:
                differences[name] = -1
                continue
            ours, theirs = copy[name][span].values[keep], variable[span].values[keep]
            same = (ours == theirs) | (np.isnan(ours) & np.isnan(theirs)) if ours.dtype.kind == "f" else ours == theirs
            differences[name] = differences.get(name, 0) + int((~same).sum())
    return differences


def last_day_field(target: UPath, day: date, name: str) -> np.ndarray | None:
    """``name`` on ``day`` of the copy (for its quick look): one row of 36-day chunks."""
    copy = xr.open_zarr(zarr_target(target), consolidated=False, zarr_format=3, chunks=None)
    if name not in copy:
        return None
    return copy[name][(day - STORE_START).days].values

