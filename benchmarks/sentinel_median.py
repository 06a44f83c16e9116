"""One 1200 x 1200 x 4-band chunk of 10 dates from the local STAC API: our masked median (uint16 sorting network) against
bottleneck.nanmedian on the same array and the seed's xarray ``.median("time")``, and the end-to-end
per-chunk time split into search, load, mask, median and write.

    .venv/bin/python benchmarks/sentinel_median.py [workdir]
"""

import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import bottleneck as bn
import numpy as np
import xarray as xr
from shapely.geometry import box
from upath import UPath

from gnt_assets.sentinel.chunk_runs import layout_for
from gnt_assets.sentinel.cube import region_dataset
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.grid import GridSpec, named_grid
from gnt_assets.sentinel.local import COLLECTION, ensure_sample_scenes, stac_api_server
from gnt_assets.sentinel.mosaic import ChunkJob, cloud_mask, load_scenes, masked_median
from gnt_assets.sentinel.stac import SceneQuery, search_scenes

BANDS = {"red": "red", "green": "green", "blue": "blue", "nir": "nir"}
MONTH = "2024-06-01"


def best_of(fn, repeats=3, clock=time.perf_counter):
    times = []
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return min(times), out


def best_of_alternating(first, second, repeats=5, clock=time.perf_counter):
    """Best times of two functions run turn about, so load from other processes hits both alike."""
    a, b = [], []
    for _ in range(repeats):
        a.append(best_of(first, 1, clock))
        b.append(best_of(second, 1, clock))
    return min(a, key=lambda r: r[0]), min(b, key=lambda r: r[0])


def main(workdir: Path) -> None:
    # One 12 km square cell at 10 m: exactly one 1200 x 1200 chunk.
    spec = GridSpec(d=12_000, target_crs="EPSG:32610", res_m=10)
    cell_box = box(-123.20, 49.22, -123.19, 49.225)
    cells = named_grid(cell_box, "bench", "square", spec).iloc[:1]
    layout = layout_for(cells)
    chunk = cells["chunk"].iloc[0]
    bbox = tuple(cells.geometry.iloc[0].bounds)
    started = time.perf_counter()
    items = ensure_sample_scenes(workdir / "scenes", bbox=bbox, months=(MONTH,), scenes_per_month=10)
    print(f"scene generation (not timed below): {time.perf_counter() - started:.1f} s")
    store = CubeStore(UPath(workdir / "cube.zarr"))
    store.ensure(layout, [MONTH], list(BANDS))
    with stac_api_server(items) as url:
        job = ChunkJob(chunk=chunk, month=MONTH, query=SceneQuery(url, COLLECTION, bbox, date.fromisoformat(MONTH)),
                       band_assets=BANDS, scl_asset="scl", layout=layout, cube=store)
        split = {}
        t = time.perf_counter()
        scenes = search_scenes(job.query)
        split["search"] = time.perf_counter() - t
        t = time.perf_counter()
        bands, scl = load_scenes(job, scenes)
        split["load"] = time.perf_counter() - t
    t = time.perf_counter()
    bad = cloud_mask(scl) | (bands == 0).any(axis=-1)
    split["mask"] = time.perf_counter() - t
    t = time.perf_counter()
    median = masked_median(bands, bad)
    split["median"] = time.perf_counter() - t
    t = time.perf_counter()
    store.write(region_dataset(layout, chunk, MONTH, list(BANDS), median), layout, chunk, MONTH)
    split["write"] = time.perf_counter() - t
    print(f"chunk {chunk}: {len(scenes)} scenes, array {bands.shape} (time, y, x, band) {bands.dtype}")
    total = sum(split.values())
    print("end-to-end per chunk: " + ", ".join(f"{k} {v:.2f} s" for k, v in split.items()) + f"; total {total:.2f} s")

    prepared = bands.astype(np.float32)
    prepared[bad] = np.nan
    prepared[prepared == 0] = np.nan
    ours_fn, ref_fn = lambda: masked_median(bands, bad), lambda: bn.nanmedian(prepared, axis=0)
    (ours, ours_out), (ref, ref_out) = best_of_alternating(ours_fn, ref_fn)
    # CPU time of this thread too: on a shared, loaded machine wall times swing with other processes.
    (ours_cpu, _), (ref_cpu, _) = best_of_alternating(ours_fn, ref_fn, 3, time.thread_time)
    data = xr.DataArray(bands, dims=("time", "y", "x", "band"))
    seed_mask = xr.DataArray(bad, dims=("time", "y", "x"))
    seed, seed_out = best_of(lambda: data.where(~seed_mask & (data != 0)).median("time"), repeats=1)
    same = np.array_equal(ours_out, np.nan_to_num(np.rint(ref_out)).astype("uint16"))
    print(f"masked median, ours (uint16 sorting network):       {ours:.3f} s wall, {ours_cpu:.3f} s CPU")
    print(f"bottleneck.nanmedian on the pre-masked float32:    {ref:.3f} s wall, {ref_cpu:.3f} s CPU   "
          f"ours/bottleneck = {ours / ref:.2f}x wall, {ours_cpu / ref_cpu:.2f}x CPU (goal <= 1.2x)")
    print(f"seed xarray .where().median('time'):               {seed:.3f} s wall   xarray/ours = {seed / ours:.2f}x")
    print(f"ours equals bottleneck result: {same}; xarray max abs diff: "
          f"{float(np.nanmax(np.abs(seed_out.values - ref_out))):.3f} DN")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sentinel_bench_")))
