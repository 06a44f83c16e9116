"""Area-weighted mean of 100,000 hexagonal cells over a generated 10,000 x 10,000 raster:
gnt_assets.rasters.zonal against exactextract and rasterstats, measured in the same run.

Cells are hexagons of ~6 pixel radius on a lattice spread over the whole raster (lon/lat
CRS, nodata holes included). Ours is timed cold (read band + exact weights + mean) and warm
(weights from the per-grid cache, the case of every further band, method or raster).
rasterstats runs on a subset and is scaled. Wall and CPU seconds are both printed (the
machine may be shared). Usage: python benchmarks/zonal.py [--size 10000] [--cells 100000]

``--large``: the case larger than memory. A 40,000 x 40,000 float32 raster (6.4 GB, written block
by block) resampled to the H3 cells that tile it (resolution 6, about 100,000 cells) through the
pipeline's own path (``resample_to_grid``, memory limit 1.5 GB) against exactextract on the same
raster and cells; each tool runs in its own process (peak RSS per path), in turn (``--rounds``),
with the load average printed beside the figures. ``--large-size 8000`` tries it small.
"""

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin

from gnt_assets.rasters.zonal import coverage_weights, zonal

NODATA = -9999.0


def make_raster(path: Path, size: int, transform) -> None:
    rng = np.random.default_rng(0)
    with rasterio.open(path, "w", driver="GTiff", height=size, width=size, count=1, dtype="float32", crs="EPSG:4326",
                       transform=transform, nodata=NODATA, tiled=True, blockxsize=512, blockysize=512) as dst:
        for row in range(0, size, 512):
            rows = min(512, size - row)
            y = (np.arange(row, row + rows)[:, None] / size)
            x = np.arange(size)[None, :] / size
            block = (20 + 10 * np.sin(6 * x) * np.cos(4 * y) + rng.normal(0, 1, (rows, size))).astype("float32")
            block[rng.random(block.shape) < 0.01] = NODATA
            dst.write(block, 1, window=((row, row + rows), (0, size)))


def make_cells(size: int, count: int, transform):
    side = int(np.ceil(np.sqrt(count)))
    spacing = size / side
    j, i = np.divmod(np.arange(count), side)
    cx = (i + 0.5 + 0.25 * (j % 2)) * spacing
    cy = (j + 0.5) * spacing
    angles = np.deg2rad(np.arange(0, 360, 60) + 7.5)
    radius = min(6.0, spacing * 0.45)
    px = cx[:, None] + radius * np.cos(angles)
    py = cy[:, None] + radius * np.sin(angles)
    x = transform.c + px * transform.a
    y = transform.f + py * transform.e
    rings = np.stack([x, y], axis=-1)
    return shapely.polygons(np.concatenate([rings, rings[:, :1]], axis=1))


LARGE_ORIGIN, LARGE_PIXEL = (0.0, 50.0), 0.0005  # 40,000 px: 20 x 20 degrees


def large_cells(size: int):
    """The H3 cells of resolution 6 whose centres fall on the raster (about 100,000 at 40,000 px)."""
    import h3

    from gnt_assets.rasters.grids import hex_cells

    lon0, lat1 = LARGE_ORIGIN
    area = (lon0, lat1 - size * LARGE_PIXEL, lon0 + size * LARGE_PIXEL, lat1)
    return hex_cells(area, float(np.sqrt(h3.average_hexagon_area(6, unit="m^2"))))


def run_one(tool: str, raster: str, cells_path: str, out: str) -> None:
    """One tool on the large case, in this process: its values to ``out``, its figures printed as JSON."""
    cells = gpd.read_parquet(cells_path)
    wall, cpu = time.perf_counter(), time.process_time()
    if tool == "ours":
        from gnt_assets.rasters.resample import resample_to_grid

        table = resample_to_grid(raster, cells, ["mean"], memory_limit_mb=1536)
        values = table.set_index("cell_id")["value"].reindex(cells.cell_id).to_numpy(float)
    else:
        from exactextract import exact_extract

        values = exact_extract(raster, cells[["cell_id", "geometry"]], "mean", output="pandas")["mean"].to_numpy(float)
    figures = {"tool": tool, "wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    np.save(out, values)
    print(json.dumps(figures))


def large_case(args) -> None:
    with tempfile.TemporaryDirectory(dir=os.environ.get("GNT_BENCH_DIR")) as tmp:
        raster, cells_path = Path(tmp) / "large.tif", Path(tmp) / "cells.parquet"
        started = time.perf_counter()
        make_raster(raster, args.large_size, from_origin(*LARGE_ORIGIN, LARGE_PIXEL, LARGE_PIXEL))
        cells = large_cells(args.large_size)
        cells.to_parquet(cells_path)
        print(f"raster {args.large_size:,} x {args.large_size:,} float32 = {raster.stat().st_size / 1e9:.1f} GB on disk, "
              f"{len(cells):,} H3 cells (resolution 6); generated in {time.perf_counter() - started:.0f} s")
        runs: dict[str, list[dict]] = {"exactextract": [], "ours": []}
        for round_ in range(args.rounds):
            for tool in (("exactextract", "ours") if round_ % 2 == 0 else ("ours", "exactextract")):
                load = os.getloadavg()[0]
                done = subprocess.run([sys.executable, __file__, "--run-one", tool, str(raster), str(cells_path), f"{tmp}/{tool}.npy"],
                                      check=True, capture_output=True, text=True)
                runs[tool].append({**json.loads(done.stdout.strip().splitlines()[-1]), "load": load})
        reference, ours = np.load(f"{tmp}/exactextract.npy"), np.load(f"{tmp}/ours.npy")
    both = np.isfinite(reference) & np.isfinite(ours)
    rel = np.abs(ours[both] - reference[both]) / np.maximum(np.abs(reference[both]), 1e-12)
    best = {tool: min(r, key=lambda x: x["wall"]) for tool, r in runs.items()}
    print(f"{'':40s}{'wall s':>9s}{'cpu s':>9s}{'peak RSS MB':>13s}{'load':>6s}  goal")
    for tool, label, goal in (("exactextract", "exactextract", ""),
                              ("ours", "ours cold (resample_to_grid, 1.5 GB limit)", "peak < 1,536 MB; >= 10x exactextract")):
        r = best[tool]
        print(f"{label:40s}{r['wall']:9.1f}{r['cpu']:9.1f}{r['peak_rss_mb']:13.0f}{r['load']:6.1f}  {goal}")
    ratio_wall, ratio_cpu = best["exactextract"]["wall"] / best["ours"]["wall"], best["exactextract"]["cpu"] / best["ours"]["cpu"]
    print(f"ours vs exactextract: {ratio_wall:.1f}x wall, {ratio_cpu:.1f}x cpu (goal >= 10x: {'met' if min(ratio_wall, ratio_cpu) >= 10 else 'not met'}); "
          f"peak RSS {best['ours']['peak_rss_mb']:.0f} MB (goal < 1,536 MB: {'met' if best['ours']['peak_rss_mb'] < 1536 else 'not met'})")
    print(f"max relative difference from exactextract: {rel.max():.3e} (goal 1e-6); NaN agreement: "
          f"{np.array_equal(np.isfinite(reference), np.isfinite(ours))}; rounds: {args.rounds}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--run-one":
        run_one(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--rasterstats-cells", type=int, default=2_000)
    parser.add_argument("--large", action="store_true", help="the larger-than-memory case instead (see the docstring)")
    parser.add_argument("--large-size", type=int, default=40_000)
    parser.add_argument("--rounds", type=int, default=1, help="large case: rounds of both tools, in turn")
    args = parser.parse_args()
    if args.large:
        large_case(args)
        return
    from exactextract import exact_extract
    from rasterstats import zonal_stats

    transform = from_origin(10.0, 50.0, 0.0005, 0.0005)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.tif"
        make_raster(path, args.size, transform)
        cells = make_cells(args.size, args.cells, transform)
        frame = gpd.GeoDataFrame({"id": np.arange(len(cells))}, geometry=cells, crs="EPSG:4326")

        clock = Clock()
        with clock("exactextract"):
            reference = exact_extract(str(path), frame, "mean", output="pandas")["mean"].to_numpy(float)
        with clock("cold"):
            with rasterio.open(path) as src:
                band = src.read(1)
            valid = band != NODATA
            weights = coverage_weights(cells, transform, band.shape)
            ours = zonal(weights, band, valid, "mean").value
        with clock("warm"):
            zonal(weights, band, valid, "mean")
        subset = frame.iloc[:: max(1, len(frame) // args.rasterstats_cells)]
        with clock("rasterstats", scale=len(frame) / len(subset)):
            zonal_stats(subset, str(path), stats=["mean"], nodata=NODATA)

    both = np.isfinite(reference) & np.isfinite(ours)
    rel = np.abs(ours[both] - reference[both]) / np.maximum(np.abs(reference[both]), 1e-12)
    print(f"cells={len(cells):,} raster={args.size}x{args.size} pixels covered={weights.matrix.nnz:,}")
    print(f"{'':44s}{'wall s':>9s}{'cpu s':>9s}{'x exactextract (wall/cpu)':>28s}")
    exact_wall, exact_cpu = clock.times["exactextract"]
    rows = [("exactextract", "exactextract"), ("cold", "ours cold (read + exact weights + mean)"), ("warm", "ours warm (cached per-grid weights)"),
            ("rasterstats", f"rasterstats (scaled from {len(subset):,} cells; not exact)")]
    for name, label in rows:
        wall, cpu = clock.times[name]
        print(f"{label:44s}{wall:9.2f}{cpu:9.2f}{exact_wall / wall:13.1f}x /{exact_cpu / cpu:6.1f}x")
    print(f"max relative difference from exactextract: {rel.max():.3e}  (NaN agreement: {np.array_equal(np.isfinite(reference), np.isfinite(ours))})")


class Clock:
    """Wall and CPU (process) seconds per named block: on a shared machine the CPU figure
    is the fair one, since every measured tool runs single-threaded in this process."""

    def __init__(self):
        self.times: dict[str, tuple[float, float]] = {}

    @contextlib.contextmanager
    def __call__(self, name: str, scale: float = 1.0):
        wall, cpu = time.perf_counter(), time.process_time()
        yield
        self.times[name] = ((time.perf_counter() - wall) * scale, (time.process_time() - cpu) * scale)

if __name__ == "__main__":
    main()
