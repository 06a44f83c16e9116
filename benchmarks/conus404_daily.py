"""One full-size CONUS404 day (1015 x 1367, all 11 variables) to daily values: ours vs NumPy vs xarray.resample.

A local zarr store laid out like the real one (zarr v2, one chunk per hour) is
generated once under ``--workdir``, in a process of its own. Each path runs in
its own process, reads the day from that store and reduces it with the same
windows (instant: mean of 00..23; hourly accumulations: sum of 01..00 next day;
bucket: the increments of 00..00 next day, differenced across resets), so the
figures compare like with like. Peak RSS is the child's own high-water mark
(VmHWM: ``ru_maxrss`` would carry over the parent's peak across fork/exec).

A last child stores the day as conus404_daily does (region write into the
15,706-day store), then runs every check (one read of the stored day), and
counts the bytes it read in each phase (``rchar`` of /proc/self/io) against
the day's stored size.

    .venv/bin/python benchmarks/conus404_daily.py [--workdir /tmp/conus404-bench] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

DAY = date(2020, 7, 2)
START = date(2020, 7, 2)


def ensure_store(workdir: Path, shape: tuple[int, int]) -> Path:
    from upath import UPath

    from gnt_assets.conus404.local import ensure_hourly_store

    # 1 day + the 00:00 step after it; the generator writes one chunk per hour like the real store
    return Path(ensure_hourly_store(UPath(workdir), START, 1, shape).path)


def ours(store: Path) -> None:
    import xarray as xr

    from gnt_assets.conus404.aggregation import aggregate_day
    from gnt_assets.conus404.variables import DEFAULT_VARIABLES, resolve_variables

    hourly = xr.open_zarr(str(store), consolidated=True, chunks=None)  # as the source resources open it
    aggregate_day(hourly, DAY, resolve_variables(DEFAULT_VARIABLES), accumulation_offset=1)


def numpy_reference(store: Path) -> None:
    import numpy as np
    import zarr

    from gnt_assets.conus404.variables import CATALOG

    group = zarr.open_group(str(store), mode="r")
    out = {}
    for name, variable in CATALOG.items():
        if variable.kind == "instant":
            hours = group[name][0:24]
            out[name] = hours.reshape(1, 24, *hours.shape[1:]).mean(axis=1)
            if name == "T2":
                out["T2_min"] = hours.min(axis=0)
                out["T2_max"] = hours.max(axis=0)
        elif variable.kind == "hourly_accumulation":
            hours = group[name][1:25]
            out[name] = hours.reshape(1, 24, *hours.shape[1:]).sum(axis=1)
        else:  # every step, as ours: increments, a drop below half being a reset
            steps = group[name][0:25].astype(np.float64)
            increments = np.diff(steps, axis=0)
            reset = steps[1:] < 0.5 * steps[:-1]
            out[name] = np.where(reset, steps[1:], increments).sum(axis=0)
    u, v = group["U10"][0:24], group["V10"][0:24]
    out["WIND10"] = np.sqrt(u * u + v * v).mean(axis=0)


def xarray_resample(store: Path) -> None:
    import numpy as np
    import xarray as xr

    from gnt_assets.conus404.variables import CATALOG

    ds = xr.open_zarr(str(store), consolidated=True)
    day = np.datetime64(DAY, "h")
    instant = [n for n, v in CATALOG.items() if v.kind == "instant"]
    hourly = [n for n, v in CATALOG.items() if v.kind == "hourly_accumulation"]
    window = ds.sel(time=slice(day, day + np.timedelta64(23, "h")))
    results = [
        window[instant].resample(time="1D").mean(),
        window[["T2"]].resample(time="1D").min(),
        window[["T2"]].resample(time="1D").max(),
        np.hypot(window["U10"], window["V10"]).resample(time="1D").mean(),
        ds[hourly].sel(time=slice(day + np.timedelta64(1, "h"), day + np.timedelta64(24, "h")))
        .resample(time="1D", offset="1h").sum(),
        ds[["ACSWDNB"]].sel(time=[day, day + np.timedelta64(24, "h")]).diff("time"),
    ]
    for result in results:
        result.compute()


def _rchar() -> int:
    return int(next(line for line in Path("/proc/self/io").read_text().splitlines() if line.startswith("rchar")).split()[1])


def _peak_mib() -> float:
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def store_and_check(store: Path) -> dict:
    """Write the day as conus404_daily does, then every check; bytes read per phase vs the day's stored size."""
    import tempfile

    import xarray as xr
    from upath import UPath

    from gnt_assets.conus404.aggregation import aggregate_day
    from gnt_assets.conus404.daily_store import daily_template, day_dataset, day_objects, ensure_store
    from gnt_assets.conus404.day_checks import evaluate_stored_days
    from gnt_assets.conus404.validation import Rules
    from gnt_assets.conus404.variables import DEFAULT_VARIABLES, resolve_variables
    from gnt_assets.core.zarr_regions import write_region
    from gnt_assets.materialization import output_metadata

    hourly = xr.open_zarr(str(store), consolidated=True, chunks=None)
    variables = resolve_variables(DEFAULT_VARIABLES)
    fields = aggregate_day(hourly, DAY, variables, accumulation_offset=1)
    with tempfile.TemporaryDirectory(dir=store.parent) as scratch:
        path = UPath(scratch) / "daily.zarr"
        ensure_store(path, daily_template(hourly, variables, "1979-10-01", "2022-10-01"))
        before = _rchar()
        write_region(path, day_dataset(hourly, fields))
        write_read = _rchar() - before
        stored = output_metadata(day_objects(path, DAY, [*fields.fields, *fields.counts, "source_hours"]))["bytes"].value
        before = _rchar()
        findings = evaluate_stored_days(path, [DAY], Rules())
        check_read = _rchar() - before
    assert len(findings[str(DAY)]) == 8
    return {"stored_bytes": stored, "write_read_bytes": write_read, "check_read_bytes": check_read}


PATHS = {"ours": ours, "numpy": numpy_reference, "xarray_resample": xarray_resample, "store_and_check": store_and_check}


def child(path: str, store: Path) -> None:
    started = time.perf_counter()
    extra = PATHS[path](store) or {}
    seconds = time.perf_counter() - started
    print(json.dumps({"path": path, "seconds": seconds, "peak_rss_mib": _peak_mib(), **extra}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/conus404-bench")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=[*PATHS, "generate"])
    parser.add_argument("--store")
    parser.add_argument("--shape", default="1015,1367", help="grid y,x (a smaller one only to try the script)")
    args = parser.parse_args()
    if args.child and args.child != "generate":
        child(args.child, Path(args.store))
        return 0
    if args.child == "generate":
        print(ensure_store(Path(args.workdir), tuple(int(n) for n in args.shape.split(","))))
        return 0
    started = time.perf_counter()
    output = subprocess.run([sys.executable, __file__, "--child", "generate", "--workdir", args.workdir, "--shape", args.shape],
                            check=True, capture_output=True, text=True).stdout  # its peak stays in its own process
    store = Path(output.strip().splitlines()[-1])
    print(f"store {store} ready in {time.perf_counter() - started:.1f} s ({args.shape.replace(',', ' x ')}, 25 hourly steps, 12 variables)")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for path in PATHS:
            output = subprocess.run([sys.executable, __file__, "--child", path, "--store", str(store)],
                                    check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            if path not in best or result["seconds"] < best[path]["seconds"]:
                best[path] = result
    io = best.pop("store_and_check")
    reference = best["numpy"]
    print(f"{'path':<16} {'best s':>8} {'vs numpy':>9} {'peak RSS MiB':>13} {'vs numpy':>9}")
    for path, result in best.items():
        print(f"{path:<16} {result['seconds']:>8.2f} {result['seconds'] / reference['seconds']:>8.2f}x "
              f"{result['peak_rss_mib']:>13.0f} {result['peak_rss_mib'] / reference['peak_rss_mib']:>8.2f}x")
    ratio = best["ours"]["seconds"] / reference["seconds"]
    memory = best["ours"]["peak_rss_mib"] / reference["peak_rss_mib"]
    read = io["write_read_bytes"] + io["check_read_bytes"]
    share = read / io["stored_bytes"]
    print(f"bytes per day: stored {io['stored_bytes']:,}; read by the region write {io['write_read_bytes']:,}, "
          f"by all 8 checks {io['check_read_bytes']:,} -> {share:.2f}x the stored day")
    print(f"goals: time ours <= 1.3x numpy -> {ratio:.2f}x {'met' if ratio <= 1.3 else 'NOT met'}; "
          f"peak RSS ours <= 1.3x numpy -> {memory:.2f}x {'met' if memory <= 1.3 else 'NOT met'}; "
          f"reads <= 1.2x stored -> {share:.2f}x {'met' if share <= 1.2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
