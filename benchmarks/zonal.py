"""Area-weighted mean of 100,000 hexagonal cells over a generated 10,000 x 10,000 raster:
gnt_assets.rasters.zonal against exactextract and rasterstats, measured in the same run.

Cells are hexagons of ~6 pixel radius on a lattice spread over the whole raster (lon/lat
CRS, nodata holes included). Ours is timed cold (read band + exact weights + mean) and warm
(weights from the per-grid cache, the case of every further band, method or raster).
rasterstats runs on a subset and is scaled. Wall and CPU seconds are both printed (the
machine may be shared). Usage: python benchmarks/zonal.py [--size 10000] [--cells 100000]
"""

import argparse
import contextlib
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--rasterstats-cells", type=int, default=2_000)
    args = parser.parse_args()
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
