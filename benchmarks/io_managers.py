"""Region writes into a shared zarr store vs a plain file write, and Dagster's cost per partition.

All in one run:

* ``write_region`` of whole-shard regions into one sharded zarr v3 store (uncompressed,
  so the bytes match) against writing the same bytes sequentially to one plain file
  (goal: zarr >= 0.5x the plain write); also with zarr's default zstd compressor, level 0 = zstd's 3, or the
  ``--zstd-level`` given (goal >= 0.3x), with the stored size beside it;
  with each writer ``write_region`` can be switched to (``codec_pipeline``: zarr-python's
  "default", "zarrs", and "shards", write_region's default, whole shards encoded by ``gnt_assets.core.zarr_shards``),
  and "before": the same calls into ``zarr_regions`` as it was at ``--before`` (git), loaded beside it;
* ``dg.materialize`` of one trivial partition on a fresh SQLite instance, and through
  the zarr and GeoParquet IO managers: milliseconds per partition beyond the work.

Each measure removes what it wrote once timed, so every writer writes into page-cache memory the kernel
has already reclaimed: on this VM, first-touch memory costs about 6.5 us per 4 KB page, and a plain write
into never-used memory took 190 ms where one into reclaimed memory took 21 ms for the same 67 MB. Without
the removal the ratios measured the page cache's history, not the writers.

``write_region(..., encoded=True)`` writes data variables that already hold stored values straight into
the zarr arrays (no xarray CF encoding; the Sentinel-2 cube writes its uint16 DN this way).

The zstd goal is bounded by the compressor: the "zstd encode alone" row compresses the same chunks
with the zstd rows' own codec (same level) on every core and writes nothing, so no zstd write can beat its ratio.

Every figure is given as wall time and as CPU time of this process (all threads):
on a machine shared with other jobs, CPU time is the comparable one (zarrs and "shards" use several
threads, so their CPU time can exceed their wall time). The write measures run in turn, round
after round, in reverse order every other round, and each row shows the mean 1-minute load average
over its runs.

Run: ``.venv/bin/python benchmarks/io_managers.py [--size 2048] [--regions 4] [--partitions 10] [--before REV]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import numcodecs
import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor create_store consults)
import pandas as pd
import xarray as xr
import zarr
from upath import UPath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gnt_assets.core import zarr_regions
from gnt_assets.core.zarr_regions import CODEC_PIPELINES, create_store
from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
from gnt_assets.io_managers.zarr import ZarrRegionIOManager, ZarrRegionWrite
from gnt_assets.resources.storage import StorageResource


def cube(size: int, regions: int) -> xr.Dataset:
    """A (region, y, x) float32 cube with a smooth signal plus noise, like a reflectance band."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype("float32")
    values = np.stack([np.sin(x / 97 + r) * np.cos(y / 53) + rng.normal(0, 0.05, (size, size)) for r in range(regions)])
    return xr.Dataset(
        {"value": (("region", "y", "x"), values.astype("float32"), {"units": "1"})},
        coords={"region": np.arange(regions), "y": np.arange(size), "x": np.arange(size)},
    )


def sharded_store(folder: Path, data: xr.Dataset, compressors, chunk: int = 512) -> UPath:
    """A fresh store for ``data``: one shard per region, ``chunk`` x ``chunk`` chunks inside it."""
    store = UPath(folder) / f"cube-{time.monotonic_ns()}.zarr"
    size = data.sizes["y"]
    encoding = {"value": {"chunks": (1, chunk, chunk), "compressors": compressors}}
    if chunk < size:
        encoding["value"]["shards"] = (1, size, size)
    create_store(store, data.chunk({"region": 1}), encoding=encoding)
    return store


class Clock:
    """Wall and CPU seconds (all threads of this process) of a block.

    CPU time is the figure to compare on a shared machine: other users' load stretches
    wall time but not the work this process does.
    """

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def removed(*paths) -> None:
    """What a measure wrote, removed once it is timed (see the module docstring)."""
    for path in paths:
        path = Path(str(path))
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def region_seconds(folder: Path, data: xr.Dataset, compressors, chunk: int = 512, pipeline: str = "default",
                   encoded: bool | None = None, regions=zarr_regions) -> Clock:
    """``write_region`` of every region (one per ``region`` label) into a fresh store, called as the
    pipelines call it (``encoded=None``: written as stored when CF encoding changes nothing, as here;
    False: through xarray). ``regions``: the ``zarr_regions`` module to call (this one, or the one before)."""
    store = sharded_store(folder, data, compressors, chunk)
    with Clock() as clock:
        for index in range(data.sizes["region"]):
            # a view, as the plain write gets
            regions.write_region(store, data.isel(region=slice(index, index + 1)), codec_pipeline=pipeline, encoded=encoded)
    removed(store.path, store.parent.path + f"/.{store.name}.regions")
    return clock


def zarr_regions_at(revision: str):
    """``gnt_assets.core.zarr_regions`` as it was at ``revision`` (git), imported beside today's, or None
    when git or the revision is missing. Its imports resolve to today's other modules."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(["git", "-C", str(root), "show", f"{revision}:gnt_assets/core/zarr_regions.py"],
                                check=True, capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    spec = importlib.util.spec_from_loader(f"zarr_regions_{revision}", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    exec(compile(source, f"{revision}:gnt_assets/core/zarr_regions.py", "exec"), module.__dict__)
    return module


def zarr_array_seconds(folder: Path, data: xr.Dataset, pipeline: str = "default") -> Clock:
    """zarr-python itself writing the same shards (the floor under ``write_region``)."""
    store = sharded_store(folder, data, None) / "value"
    with zarr.config.set({"codec_pipeline.path": CODEC_PIPELINES[pipeline]}):
        array = zarr.open_array(str(store), mode="r+", config={"write_empty_chunks": True})  # as write_region does
    with Clock() as clock:
        for index in range(data.sizes["region"]):
            array[index] = data.value.values[index]
    removed(store.parent.path)
    return clock


def plain_seconds(folder: Path, data: xr.Dataset) -> Clock:
    """The same bytes written region after region into one plain file."""
    target = folder / f"plain-{time.monotonic_ns()}.bin"
    with Clock() as clock, open(target, "wb") as handle:
        for index in range(data.sizes["region"]):
            handle.write(np.ascontiguousarray(data.value.values[index]).tobytes())
    removed(target)
    return clock


def zstd_alone_seconds(data: xr.Dataset, chunk: int = 512, level: int = 0) -> Clock:
    """The zstd rows' compressor (zarr v3's zstd, level 0 unless ``--zstd-level``, as zarr's ZstdCodec runs it) encoding
    every chunk on all cores, written nowhere: the ceiling of any zstd write, since no store can write faster than it
    compresses."""
    codec = numcodecs.Zstd(level=level)
    chunks = [np.ascontiguousarray(region[y:y + chunk, x:x + chunk]) for region in data.value.values
              for y in range(0, region.shape[0], chunk) for x in range(0, region.shape[1], chunk)]
    with Clock() as clock, ThreadPoolExecutor(os.cpu_count()) as pool:  # numcodecs releases the GIL while it compresses
        list(pool.map(codec.encode, chunks))
    return clock


def best_in_turn(repeats: int, measures: dict) -> dict[str, tuple[float, float, float]]:
    """Fastest wall and fastest CPU seconds per measure, and the mean 1-minute load average over its runs;
    the measures run in turn, round after round, in reverse order every other round, so load from
    other jobs on a shared machine falls on all of them alike."""
    clocks: dict[str, list[Clock]] = {name: [] for name in measures}
    loads: dict[str, list[float]] = {name: [] for name in measures}
    for round_number in range(repeats):
        names = list(measures) if round_number % 2 == 0 else list(reversed(measures))
        for name in names:
            clocks[name].append(measures[name]())
            loads[name].append(os.getloadavg()[0])
    return {name: (min(c.wall for c in cs), min(c.cpu for c in cs), statistics.mean(loads[name]))
            for name, cs in clocks.items()}


TILE = xr.Dataset(
    {"value": (("y", "x"), np.zeros((64, 64), "float32"))}, coords={"y": np.arange(64), "x": np.arange(64)}
)
PARTITIONS = dg.StaticPartitionsDefinition([f"p{i:03d}" for i in range(1000)])


@dg.asset(partitions_def=PARTITIONS)
def trivial_value(context) -> int:
    return len(context.partition_key)


@dg.asset(partitions_def=PARTITIONS, io_manager_key="geoparquet_io_manager")
def trivial_table(context) -> pd.DataFrame:
    return pd.DataFrame({"partition": [context.partition_key]})


@dg.asset(partitions_def=PARTITIONS, io_manager_key="zarr_io_manager")
def trivial_region(context) -> ZarrRegionWrite:
    index = int(context.partition_key[1:])
    template = TILE.expand_dims(partition=np.arange(1000)).chunk({"partition": 1})
    return ZarrRegionWrite(data=TILE.expand_dims(partition=[index]), template=template)


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def materialize_ms(asset, partitions: int, resources: dict) -> tuple[float, float]:
    """Median wall and CPU milliseconds of ``dg.materialize`` for one partition (after one warm-up run)."""
    clocks = []
    with dg.instance_for_test() as instance:
        for index in range(partitions + 1):
            with Clock() as clock:
                dg.materialize([asset], partition_key=f"p{index:03d}", instance=instance, resources=resources, run_config=QUIET)
            clocks.append(clock)
    return statistics.median(c.wall for c in clocks[1:]) * 1000, statistics.median(c.cpu for c in clocks[1:]) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="region edge in pixels (float32)")
    parser.add_argument("--regions", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=10, help="partitions timed per Dagster figure")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default="4c3f050", help="git revision of zarr_regions to measure as 'before'")
    parser.add_argument("--zstd-level", type=int, default=0,
                        help="zstd level of the zstd rows and their ceiling (0: zarr's default, zstd's level 3)")
    args = parser.parse_args()

    data = cube(args.size, args.regions)
    megabytes = data.value.nbytes / 1e6
    loaded_before = "{:.1f} {:.1f} {:.1f}".format(*os.getloadavg())
    before = zarr_regions_at(args.before)
    with tempfile.TemporaryDirectory(dir=os.environ.get("GNT_BENCH_DIR")) as folder:
        folder = Path(folder)
        zstd = [zarr.codecs.ZstdCodec(level=args.zstd_level)]  # level 0: what compressors="auto" gives
        measures = {"plain": lambda: plain_seconds(folder, data), "zstd alone": lambda: zstd_alone_seconds(data, level=args.zstd_level)}
        for pipeline in ("default", "zarrs"):
            measures[f"array {pipeline}"] = lambda p=pipeline: zarr_array_seconds(folder, data, p)
        for when, module, pipelines in (("before", before, ("default", "zarrs")), ("after", zarr_regions, ("default", "zarrs", "shards"))):
            for pipeline in pipelines if module is not None else ():
                for compression, compressors in (("raw", None), ("zstd", zstd)):
                    measures[f"{when} {compression} {pipeline}"] = lambda c=compressors, p=pipeline, m=module: region_seconds(
                        folder, data, c, pipeline=p, regions=m)
            if module is not None:
                measures[f"{when} xarray default"] = lambda m=module: region_seconds(folder, data, None, encoded=False, regions=m)
        best = best_in_turn(args.repeats, measures)
        stored = sharded_store(folder, data, zstd)  # untimed: what the zstd rows store
        zarr_regions.write_region(stored, data)
        stored_bytes = sum(p.stat().st_size for p in Path(stored.path, "value").rglob("*") if p.is_file() and p.name != "zarr.json")
        storage = StorageResource(root=str(folder / "root"))
        resources = {"zarr_io_manager": ZarrRegionIOManager(storage=storage), "geoparquet_io_manager": GeoParquetIOManager(storage=storage)}
        trivial = materialize_ms(trivial_value, args.partitions, {})
        table = materialize_ms(trivial_table, args.partitions, resources)
        region = materialize_ms(trivial_region, args.partitions, resources)

    plain = best["plain"]
    print(f"data: {args.regions} regions x {args.size}x{args.size} float32 = {megabytes:.0f} MB; best of {args.repeats}, measures in turn")
    print(f"machine: {os.cpu_count()} cores, load average {loaded_before} at start, "
          "{:.1f} {:.1f} {:.1f} at end".format(*os.getloadavg()))
    print(f"{'':58}{'wall MB/s':>10} {'ratio':>6}  {'CPU MB/s':>9} {'ratio':>6} {'load':>5}")
    goals = {"raw": "goal >= 0.50x", "zstd": "goal >= 0.30x"}
    rows = [("plain sequential file write", "plain", ""),
            ("zstd encode alone, all cores, no write (ceiling)", "zstd alone", ""),
            ("zarr-python array writes, default pipeline", "array default", ""),
            ("zarr-python array writes, zarrs pipeline", "array zarrs", "")]
    if before is None:
        print(f"  (no 'before' rows: zarr_regions at {args.before} could not be read from git)")
    for when in ("before", "after"):
        for compression, label in (("raw", "uncompressed"), ("zstd", "zstd")):
            for pipeline in ("default", "zarrs", "shards"):
                key = f"{when} {compression} {pipeline}"
                if key in best:
                    rows.append((f"{when}: write_region, {label}, {pipeline}", key, goals[compression]))
        if f"{when} xarray default" in best:
            rows.append((f"{when}: write_region through xarray, uncompressed", f"{when} xarray default", ""))
    for label, key, goal in rows:
        wall, cpu, load = best[key]
        print(f"{label:58}{megabytes / wall:10.0f} {plain[0] / wall:5.2f}x  {megabytes / cpu:9.0f} {plain[1] / cpu:5.2f}x {load:5.1f}  {goal}")
    print(f"  (ratio = plain time / this time; before = zarr_regions at {args.before}; goals on wall time; "
          f"after: {zarr_regions.DEFAULT_CODEC_PIPELINE!r} is write_region's default)")
    print(f"zstd level {args.zstd_level}: {data.value.nbytes / 1e6:.1f} MB stored as {stored_bytes / 1e6:.1f} MB "
          f"({data.value.nbytes / stored_bytes:.3f}x smaller)")
    for when in ("before", "after"):
        for pipeline in ("default", "zarrs"):
            if f"{when} raw {pipeline}" in best:
                raw, array = best[f"{when} raw {pipeline}"], best[f"array {pipeline}"]
                print(f"{when}: write_region beyond zarr-python's array writes ({pipeline}): "
                      f"{(raw[0] - array[0]) / args.regions * 1000:.1f} ms wall, {(raw[1] - array[1]) / args.regions * 1000:.1f} ms CPU per region")
    print(f"dg.materialize of one partition       {'wall ms':>10} {'CPU ms':>9}")
    for label, (wall, cpu) in [
        ("trivial asset, in-memory output", trivial),
        ("1-row table, geoparquet_io_manager", table),
        ("64x64 region, zarr_io_manager", region),
    ]:
        print(f"{label:38}{wall:10.0f} {cpu:9.0f}")


if __name__ == "__main__":
    main()
