"""Mapterhorn COG step against ``gdal_translate`` with the same creation options, and the
per-file chain's orchestration overhead.

1. The same generated float32 terrain raster (default 8192 x 8192 = 256 MiB, smooth relief
   plus centimetre noise, a nodata corner) goes through ``gdal_translate -of COG`` with the
   upstream options and through ``rasters.write_cog`` (same options via rasterio's GDAL),
   timed twice: the translation alone, and the whole step as the pipeline runs it (translate
   + rio-cogeo validation + block-by-block read-back against the input). Goal: <= 1.1x the
   time, output size within 1%.
2. A 100 MiB GeoTIFF served on the loopback server runs the six per-file steps once as plain
   function calls (the work) and once as Dagster materializations of the six assets with
   their checks (the work + Dagster + checks); the difference is reported as a share of the work.

Needs gdal_translate: ``apt-get install gdal-bin``.
Usage: python benchmarks/cog.py [--size 8192] [--chain-size 5120] [--repeat 2]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from gnt_assets.local.mapterhorn import SourceServer, license_pdf
from gnt_assets.mapterhorn import assets, rasters, steps
from gnt_assets.mapterhorn.catalog import list_files
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.download import download
from gnt_assets.mapterhorn.rasters import COG_OPTIONS
from gnt_assets.resources.mapterhorn import MapterhornSourcesResource

NODATA = -9999.0
FILE_ASSETS = [assets.mapterhorn_download, assets.mapterhorn_unpacked, assets.mapterhorn_georeferenced,
               assets.mapterhorn_cog, assets.mapterhorn_bounds, assets.mapterhorn_coverage]


def make_terrain(path: Path, size: int) -> None:
    """Smooth relief with centimetre noise, written in 512-row strips (never the whole array in memory twice)."""
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs="EPSG:2056",
                   transform=from_origin(2_600_000, 1_200_000, 1.0, 1.0), nodata=NODATA, tiled=True, blockxsize=512, blockysize=512)
    x = np.arange(size)[None, :] / size
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, 512):
            y = np.arange(row, min(row + 512, size))[:, None] / size
            block = 1500 + 600 * np.sin(7 * x) * np.cos(5 * y) + 80 * np.sin(41 * x + 29 * y) + rng.normal(0, 0.01, (len(y), size))
            block = block.astype("float32")
            if row < size // 8:
                block[:, : size // 8] = NODATA
            dst.write(block, 1, window=((row, row + len(y)), (0, size)))


def best_of(repeat: int, fn, *outputs: Path) -> float:
    """The fastest of ``repeat`` runs (the machine is shared), outputs removed before each run."""
    times = []
    for _ in range(repeat):
        for path in outputs:
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_cog(tmp: Path, size: int, repeat: int) -> None:
    src = tmp / "terrain.tif"
    make_terrain(src, size)
    print(f"COG step on {size} x {size} float32 ({src.stat().st_size / 2**20:.0f} MiB uncompressed GeoTIFF input), best of {repeat}")
    options = [arg for key, value in COG_OPTIONS.items() for arg in ("-co", f"{key}={value}")]
    gdal_out, ours_out, plain_out = tmp / "gdal.tif", tmp / "ours.tif", tmp / "plain.tif"
    t_gdal = best_of(repeat, lambda: subprocess.run(["gdal_translate", "-q", "-of", "COG", *options, str(src), str(gdal_out)], check=True), gdal_out)
    t_plain = best_of(repeat, lambda: rasterio.shutil.copy(str(src), str(plain_out), driver="COG", **COG_OPTIONS), plain_out)
    t_ours = best_of(repeat, lambda: rasters.write_cog(src, ours_out), ours_out)
    gdal_version = subprocess.run(["gdal_translate", "--version"], capture_output=True, text=True).stdout.strip()
    s_gdal, s_plain, s_ours = (p.stat().st_size for p in (gdal_out, plain_out, ours_out))
    rows = [(f"gdal_translate ({gdal_version.split(',')[0]})", t_gdal, s_gdal),
            (f"ours, translation only (rasterio, GDAL {rasterio.__gdal_version__})", t_plain, s_plain),
            ("ours, whole step (translate + validate + read-back)", t_ours, s_ours)]
    for label, seconds, size_bytes in rows:
        print(f"  {label:<56} {seconds:7.2f} s {size_bytes:>13,} bytes  time x{seconds / t_gdal:.2f}  size {100 * (size_bytes / s_gdal - 1):+.3f}%")
    for path in (src, gdal_out, ours_out, plain_out):
        path.unlink()


def write_source(catalog: Path, url: str) -> None:
    folder = catalog / "bench"
    folder.mkdir(parents=True)
    (folder / "file_list.txt").write_text(f"# benchmark source\n{url}\n")
    (folder / "metadata.json").write_text(json.dumps({"name": "bench", "resolution-m": 1.0, "website": "https://example.org",
                                                      "license": "CC BY 4.0", "producer": "benchmark"}))
    (folder / "LICENSE.pdf").write_bytes(license_pdf("bench"))


def plain_chain(root: Path, catalog: Path) -> None:
    (entry,) = list_files(catalog, "bench")
    work = FileWork(root, entry.key)
    steps.download_step(work, entry, lambda url, dest: download(url, dest, retries=0))
    steps.unpack_step(work, max_total_bytes=2**40, max_ratio=200)
    steps.georeference_step(work, None)
    steps.cog_step(work)
    steps.bounds_step(work)
    steps.polygon_step(work)


def dagster_chain(root: Path, catalog: Path, instance: dg.DagsterInstance) -> None:
    (entry,) = list_files(catalog, "bench")
    instance.add_dynamic_partitions("mapterhorn_files", [entry.key])
    resource = MapterhornSourcesResource(work_dir=str(root), catalog_dir=str(catalog), retries=0)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = dg.materialize(FILE_ASSETS, partition_key=entry.key, instance=instance, resources={"mapterhorn_sources": resource}, run_config=quiet)
    assert result.success


def bench_chain(tmp: Path, size: int, repeat: int) -> None:
    www = tmp / "www"
    (www / "bench").mkdir(parents=True)
    make_terrain(www / "bench" / "big.tif", size)
    mib = (www / "bench" / "big.tif").stat().st_size / 2**20
    with SourceServer(www) as server, tempfile.TemporaryDirectory() as home:
        catalog = tmp / "catalog"
        write_source(catalog, f"{server.base_url}/bench/big.tif")
        t_work = best_of(repeat, lambda: plain_chain(tmp / "plain", catalog), tmp / "plain")
        with dg.DagsterInstance.local_temp(home) as instance:
            t_dagster = best_of(repeat, lambda: dagster_chain(tmp / "dagster", catalog, instance), tmp / "dagster")
    print(f"Per-file chain on a {mib:.0f} MiB GeoTIFF (download -> unpacked -> georeferenced -> COG -> bounds -> polygon), best of {repeat}")
    print(f"  steps as plain calls (the work):   {t_work:7.2f} s")
    print(f"  six Dagster assets with checks:     {t_dagster:7.2f} s")
    print(f"  overhead (Dagster + checks):        {t_dagster - t_work:7.2f} s = {100 * (t_dagster - t_work) / t_work:.0f}% of the work")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=8192, help="COG benchmark raster side (8192 = 256 MiB float32)")
    parser.add_argument("--chain-size", type=int, default=5120, help="chain benchmark raster side (5120 = 100 MiB float32)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per measurement; the fastest counts")
    args = parser.parse_args()
    if shutil.which("gdal_translate") is None:
        sys.exit("gdal_translate not found: install it with `apt-get install gdal-bin` (the reference tool of this benchmark)")
    with tempfile.TemporaryDirectory() as tmp:
        bench_cog(Path(tmp), args.size, args.repeat)
        bench_chain(Path(tmp), args.chain_size, args.repeat)


if __name__ == "__main__":
    main()
