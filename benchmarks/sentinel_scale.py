"""Sentinel-2 at continental scale: the grid and partition figures of issue 19, with the goal beside each.

Europe (35-71 N, 25 W-45 E) at 10 m, months 2017-01..2026-12 (120):

1. Grids (``gnt_assets.sentinel.tiling``): chunks (the ``chunk`` partitions) of each configuration, partitions
   (month x chunk), grid build time and the build's peak RSS (each build in a fresh process, so the figure is
   the grid's own), cells in all (counted chunk by chunk, never held at once).
2. Per-partition planning: time to compute one chunk's cells and cube layout (regions, GeoBoxes) from its key
   and the AOI, over a sample of chunks (median and worst).
3. Dagster: a real ephemeral instance with every chunk partition added; the chunk sensor's tick over the grid
   table (first tick: all chunks new; second: every partition present) and the monthly schedule's tick for all
   chunks, through ``build_sensor_context`` / ``build_schedule_context``.

Not measured here: the full-size chunk on a LocalCluster (peak worker memory, time split, ratio against the
seed's odc-stac + xarray median): that needs part 5 of the issue (lazy chunked loading, per-cell ledger and retries).

The square grids are what ``sentinel_grid`` stores with ``chunk_km`` set (e.g. ``{"name": "europe", "generator":
"square", "d": 960, "res_m": 10, "chunk_km": 200}``).

Usage: python benchmarks/sentinel_scale.py [--sample 12] [--only planning] [--grid 'Major TOM']
"""

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from datetime import UTC, datetime

from shapely.geometry import box

EUROPE = (-25.0, 35.0, 45.0, 71.0)
MONTHS = 120  # 2017-01 .. 2026-12
PARTITION_GOAL = 100_000
PLAN_GOAL_S = 1.0
TICK_GOAL_S = 30.0


def _tilings(grid: str = ""):
    from gnt_assets.sentinel.tiling import MajorTomTiling, SquareTiling

    tilings = {
        "square 960 m, 200 km chunks, UTM per chunk (default)": SquareTiling(cell_m=960, res_m=10, chunk_m=200_000),
        "square 960 m, 200 km chunks, EPSG:3035": SquareTiling(cell_m=960, res_m=10, chunk_m=200_000, crs="EPSG:3035"),
        "square 960 m, 100 km chunks, UTM per chunk": SquareTiling(cell_m=960, res_m=10, chunk_m=100_000),
        "Major TOM 1 km, 2 degree chunks": MajorTomTiling(d=1000, res_m=10, chunk_deg=2.0),
    }
    return {label: tiling for label, tiling in tilings.items() if grid.lower() in label.lower()}


def _build(label: str, queue) -> None:
    """In a fresh process: the chunk table, its time, this process's peak RSS, and the cells counted per chunk."""
    from gnt_assets.sentinel.tiling import SquareTiling, chunk_table

    tiling, aoi = _tilings()[label], box(*EUROPE)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    table = chunk_table(tiling, aoi)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cells = None
    if isinstance(tiling, SquareTiling):  # Major TOM: generating 20M cells one chunk at a time takes too long here
        cells = 0
        for crs, part in tiling.zones(aoi):
            for chunk in (c for c in tiling.chunks(aoi) if c.crs == crs):
                cells += len(tiling.cell_indices(chunk, part))
    queue.put((len(table), seconds, before / 1024, peak / 1024, cells,
               resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def grids(grid: str = "") -> None:
    print("1. Grids over Europe (35-71 N, 25 W-45 E) at 10 m, 120 months")
    spawn = multiprocessing.get_context("spawn")
    for label in _tilings(grid):
        queue = spawn.Queue()
        process = spawn.Process(target=_build, args=(label, queue))
        process.start()
        chunks, seconds, base_mb, peak_mb, cells, after_mb = queue.get()
        process.join()
        partitions = chunks * MONTHS
        verdict = "meets" if partitions < PARTITION_GOAL else "MISSES"
        print(f"   {label}:")
        print(f"      chunks {chunks:,}; partitions {partitions:,} (goal < {PARTITION_GOAL:,}: {verdict})")
        print(f"      grid build {seconds:.2f} s, peak RSS {peak_mb:.0f} MB (process at start {base_mb:.0f} MB; goal: bounded,"
              f" a table of chunks, not of cells)")
        if cells is not None:
            print(f"      cells {cells:,} counted chunk by chunk (peak RSS then {after_mb:.0f} MB: one chunk's cells at a time)")


def planning(sample: int, grid: str = "") -> None:
    from gnt_assets.sentinel import chunk_runs
    from gnt_assets.sentinel.tiling import MajorTomTiling, tiled_grid

    print(f"2. Per-partition planning (one chunk's cells + cube layout; square: from the sentinel_grid row as a run"
          f" does, Major TOM: from the key and the AOI; {sample} chunks sampled)")
    aoi = box(*EUROPE)
    for label, tiling in _tilings(grid).items():
        table = None if isinstance(tiling, MajorTomTiling) else tiled_grid(tiling, aoi)
        chunks = [c.key for c in tiling.chunks(aoi)] if table is None else table["chunk"].tolist()
        picked = chunks[:: max(1, len(chunks) // sample)][:sample]
        times, counts = [], []
        for chunk in picked:
            start = time.perf_counter()
            if table is None:
                counts.append(len(tiling.cells(chunk, aoi)))  # exact per-cell GeoBoxes
            else:
                counts.append(len(chunk_runs.partition_layout(table, chunk)[1]))
            times.append(time.perf_counter() - start)
        worst = max(times)
        print(f"   {label}: median {statistics.median(times):.3f} s, worst {worst:.3f} s over chunks of "
              f"{min(counts):,}..{max(counts):,} cells (goal < {PLAN_GOAL_S:.0f} s: {'meets' if worst < PLAN_GOAL_S else 'MISSES'})")


def dagster_ticks() -> None:
    import dagster as dg

    from gnt_assets.partitions import sentinel_chunk
    from gnt_assets.resources.storage import StorageResource
    from gnt_assets.sentinel import chunk_runs
    from gnt_assets.sentinel.schedules import sentinel_monthly_schedule
    from gnt_assets.sentinel.sensors import sentinel_chunk_sensor
    from gnt_assets.sentinel.tiling import SquareTiling, tiled_grid

    print("3. Dagster ticks, sentinel_grid's table for square 960 m, 200 km chunks, UTM; every partition present")
    table = tiled_grid(SquareTiling(cell_m=960, res_m=10, chunk_m=200_000), box(*EUROPE))
    with tempfile.TemporaryDirectory() as root, dg.instance_for_test() as instance:
        storage = StorageResource(root=root)
        path = chunk_runs.grid_table_path(storage)
        path.parent.mkdir(parents=True, exist_ok=True)
        table.to_parquet(path.path)
        grid_bytes = path.stat().st_size

        start = time.perf_counter()
        first = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        first_s = time.perf_counter() - start
        start = time.perf_counter()
        for request in first.dynamic_partitions_requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        add_s = time.perf_counter() - start
        present = len(instance.get_dynamic_partitions(sentinel_chunk.name))
        start = time.perf_counter()
        again = sentinel_chunk_sensor(dg.build_sensor_context(instance=instance, resources={"storage": storage}))
        again_s = time.perf_counter() - start
        start = time.perf_counter()
        when = datetime(2026, 12, 5, 6, tzinfo=UTC)
        requests = sentinel_monthly_schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
        schedule_s = time.perf_counter() - start

    def verdict(seconds: float) -> str:
        return "meets" if seconds < TICK_GOAL_S else "MISSES"

    print(f"   grid table {len(table):,} rows, {grid_bytes / 1e6:.2f} MB GeoParquet (one row per chunk, none per cell)")
    print(f"   chunk sensor, first tick: {first_s:.2f} s for {len(first.run_requests):,} run requests and "
          f"{len(table):,} new partitions (goal < {TICK_GOAL_S:.0f} s: {verdict(first_s)}); adding them {add_s:.2f} s")
    print(f"   chunk sensor, every partition present ({present:,} chunks x {MONTHS} months = {present * MONTHS:,}): "
          f"{again_s:.2f} s, {type(again).__name__} (goal < {TICK_GOAL_S:.0f} s: {verdict(again_s)})")
    print(f"   monthly schedule tick: {schedule_s:.2f} s for {len(requests):,} run requests "
          f"(goal < {TICK_GOAL_S:.0f} s: {verdict(schedule_s)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=12, help="chunks sampled for the planning time")
    parser.add_argument("--only", choices=["grids", "planning", "ticks"], help="one figure only")
    parser.add_argument("--grid", default="", help="only the grids whose label holds this text (e.g. 'Major TOM')")
    args = parser.parse_args()
    if args.only in (None, "grids"):
        grids(args.grid)
    if args.only in (None, "planning"):
        planning(args.sample, args.grid)
    if args.only in (None, "ticks"):
        dagster_ticks()


if __name__ == "__main__":
    main()
