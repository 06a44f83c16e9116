"""One full-size CONUS404 day (1015 x 1367, all 11 variables) to daily values: ours vs NumPy vs xarray.resample.

A local zarr store laid out like the real one (zarr v2, one chunk per hour) is
generated once under ``--workdir``. Each path runs in its own process, reads
the day from that store and reduces it with the same windows (instant: mean of
00..23; hourly accumulations: sum of 01..00 next day; bucket: last minus
first), so the figures compare like with like; peak RSS is the child's.

    .venv/bin/python benchmarks/conus404_daily.py [--workdir /tmp/conus404-bench] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

DAY = date(2020, 7, 2)
START = date(2020, 7, 2)


def ensure_store(workdir: Path) -> Path:
    from upath import UPath

    from gnt_assets.conus404.local import FULL_SHAPE, ensure_hourly_store

    # 1 day + the 00:00 step after it; the generator writes one chunk per hour like the real store
    return Path(ensure_hourly_store(UPath(workdir), START, 1, FULL_SHAPE).path)


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
        else:
            out[name] = group[name][24] - group[name][0]
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


PATHS = {"ours": ours, "numpy": numpy_reference, "xarray_resample": xarray_resample}


def child(path: str, store: Path) -> None:
    started = time.perf_counter()
    PATHS[path](store)
    seconds = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"path": path, "seconds": seconds, "peak_rss_mib": peak_mib}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="/tmp/conus404-bench")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", choices=list(PATHS))
    parser.add_argument("--store")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.store))
        return 0
    started = time.perf_counter()
    store = ensure_store(Path(args.workdir))
    print(f"store {store} ready in {time.perf_counter() - started:.1f} s (1015 x 1367, 25 hourly steps, 11 variables)")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for path in PATHS:
            output = subprocess.run([sys.executable, __file__, "--child", path, "--store", str(store)],
                                    check=True, capture_output=True, text=True).stdout
            result = json.loads(output.strip().splitlines()[-1])
            if path not in best or result["seconds"] < best[path]["seconds"]:
                best[path] = result
    reference = best["numpy"]["seconds"]
    print(f"{'path':<16} {'best s':>8} {'vs numpy':>9} {'peak RSS MiB':>13}")
    for path, result in best.items():
        print(f"{path:<16} {result['seconds']:>8.2f} {result['seconds'] / reference:>8.2f}x {result['peak_rss_mib']:>13.0f}")
    ratio = best["ours"]["seconds"] / reference
    print(f"goals: ours <= 1.3x numpy -> {ratio:.2f}x {'met' if ratio <= 1.3 else 'NOT met'}; "
          f"peak RSS < 2048 MiB -> {best['ours']['peak_rss_mib']:.0f} MiB {'met' if best['ours']['peak_rss_mib'] < 2048 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
