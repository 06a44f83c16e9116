"""Area-weighted mean of 100,000 hexagonal cells over a generated 10,000 x 10,000 raster:
gnt_assets.rasters.zonal against exactextract and rasterstats, measured in the same run.

Cells are hexagons of ~6 pixel radius on a lattice spread over the whole raster (lon/lat
CRS, nodata holes included). Ours is timed cold (read band + exact weights + mean) and warm
(weights from the per-grid cache, the case of every further band, method or raster).
rasterstats runs on a subset and is scaled. Usage: python benchmarks/zonal.py [--size 10000] [--cells 100000]
"""

import argparse
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

        start = time.perf_counter()
        reference = exact_extract(str(path), frame, "mean", output="pandas")["mean"].to_numpy(float)
        t_exact = time.perf_counter() - start

        start = time.perf_counter()
        with rasterio.open(path) as src:
            band = src.read(1)
        valid = band != NODATA
        weights = coverage_weights(cells, transform, band.shape)
        ours = zonal(weights, band, valid, "mean").value
        t_cold = time.perf_counter() - start
        start = time.perf_counter()
        zonal(weights, band, valid, "mean")
        t_warm = time.perf_counter() - start

        subset = frame.iloc[:: max(1, len(frame) // args.rasterstats_cells)]
        start = time.perf_counter()
        zonal_stats(subset, str(path), stats=["mean"], nodata=NODATA)
        t_rs = (time.perf_counter() - start) * len(frame) / len(subset)

    both = np.isfinite(reference) & np.isfinite(ours)
    rel = np.abs(ours[both] - reference[both]) / np.maximum(np.abs(reference[both]), 1e-12)
    print(f"cells={len(cells):,} raster={args.size}x{args.size} pixels covered={weights.matrix.nnz:,}")
    print(f"exactextract                 {t_exact:8.2f} s")
    print(f"ours cold (read+weights+mean){t_cold:8.2f} s   speed-up vs exactextract {t_exact / t_cold:6.1f}x")
    print(f"ours warm (cached weights)   {t_warm:8.2f} s   speed-up vs exactextract {t_exact / t_warm:6.1f}x")
    print(f"rasterstats (scaled from {len(subset):,} cells, centre-in-pixel, not exact) {t_rs:8.2f} s   exactextract is {t_rs / t_exact:5.1f}x faster")
    print(f"max relative difference from exactextract: {rel.max():.3e}  (NaN agreement: {np.array_equal(np.isfinite(reference), np.isfinite(ours))})")


if __name__ == "__main__":
    main()
