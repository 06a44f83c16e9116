"""Per-file raster steps: COG options, bounds math, bad rasters, and a COG step killed mid-write."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.transform import from_origin

from gnt_assets.mapterhorn import checks, rasters, steps
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.local import ascii_grid, xyz_grid
from gnt_assets.mapterhorn.rasters import MAX_LATITUDE, RasterError, web_mercator_bounds

EDGE = 20037508.342789244


def _tif(path, size=64, crs="EPSG:32632", nodata=-9999.0):
    data = np.arange(size * size, dtype="float32").reshape(size, size) / 7
    data[:8, :8] = nodata
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=crs,
                       transform=from_origin(500000, 5700000, 10, 10), nodata=nodata) as dataset:
        dataset.write(data, 1)
    return path


def test_cog_has_exactly_the_upstream_options_and_reads_back(tmp_path):
    cog = rasters.write_cog(_tif(tmp_path / "in.tif"), tmp_path / "out.tif")
    with rasterio.open(cog) as dataset:
        assert dataset.tags(ns="IMAGE_STRUCTURE")["COMPRESSION"] == "LERC"
        assert dataset.block_shapes[0] == (512, 512) and dataset.overviews(1) == []
    assert rasters.cog_problems(cog, tmp_path / "in.tif") == []


def test_read_back_catches_values_and_masks_that_drifted(tmp_path):
    cog = rasters.write_cog(_tif(tmp_path / "in.tif"), tmp_path / "out.tif")
    with rasterio.open(tmp_path / "in.tif") as src:
        data, profile = src.read(1), src.profile
    for name, change in (("shifted", lambda d: np.where(d == -9999.0, d, d + 0.002)), ("holed", lambda d: np.where(d == 700.0 / 7, -9999.0, d))):
        with rasterio.open(tmp_path / f"{name}.tif", "w", **profile) as dst:
            dst.write(change(data).astype("float32"), 1)
    assert "more than MAX_Z_ERROR" in rasters.cog_problems(cog, tmp_path / "shifted.tif")[0]
    assert "nodata mask differs" in rasters.cog_problems(cog, tmp_path / "holed.tif")[0]


def test_read_back_reports_the_first_drifted_strip_of_a_large_raster(tmp_path):
    """Strips are checked on parallel threads; the report still names the first bad rows."""
    cog = rasters.write_cog(_tif(tmp_path / "in.tif", size=2100), tmp_path / "out.tif")
    with rasterio.open(tmp_path / "in.tif") as src:
        data, profile = src.read(1), src.profile
    data[1600, 5] += 0.5
    data[1030, 7] += 0.5
    with rasterio.open(tmp_path / "drifted.tif", "w", **profile) as dst:
        dst.write(data, 1)
    assert rasters.cog_problems(cog, tmp_path / "drifted.tif") == [
        "values differ by 0.5 (more than MAX_Z_ERROR) in rows 1024-1536"]


@settings(max_examples=60, deadline=None)
@given(
    st.floats(-180, 180), st.floats(-180, 180), st.floats(-90, 90), st.floats(-90, 90),
)
def test_web_mercator_bounds_are_finite_clamped_and_ordered(west, east, lat1, lat2):
    south, north = sorted((lat1, lat2))
    left, bottom, right, top = web_mercator_bounds(west, south, east, north)
    assert all(math.isfinite(v) for v in (left, bottom, right, top))
    # 85.051129 (the spec's clamp) lies 0.3 m beyond the square's edge.
    assert -EDGE - 1 <= left <= right <= EDGE + 1 and -EDGE - 1 <= bottom <= top <= EDGE + 1
    if west > east:  # crosses the antimeridian: the row spans the whole width
        assert (left, right) == pytest.approx((-EDGE, EDGE))


def test_polar_latitudes_clamp_to_web_mercator_limit():
    _, bottom, _, top = web_mercator_bounds(0, -90, 1, 90)
    assert top == pytest.approx(-bottom) and top == pytest.approx(web_mercator_bounds(0, 0, 1, MAX_LATITUDE)[3])


def test_bounds_of_a_utm_raster(tmp_path):
    bounds = rasters.raster_bounds(_tif(tmp_path / "a.tif"))
    assert bounds.filename == "a.tif" and (bounds.width, bounds.height) == (64, 64)
    assert 900_000 < bounds.left < bounds.right < 1_100_000  # about 9 degrees east


def test_bounds_that_become_non_finite_are_an_error(tmp_path):
    # An orthographic raster lying wholly off the visible disk has no longitude/latitude at all.
    ortho = _tif(tmp_path / "ortho.tif", crs="+proj=ortho +lat_0=0 +lon_0=0 +R=6371000")
    with rasterio.open(ortho, "r+") as dataset:
        dataset.transform = from_origin(7_000_000, 8_000_000, 10_000, 10_000)
    with pytest.raises(RasterError, match=r"ortho.tif: bounds .* non-finite"):
        rasters.raster_bounds(ortho)


def test_corrupt_tiff_irregular_xyz_and_missing_crs_are_named(tmp_path):
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(RasterError, match=r"bad.tif: not a readable raster"):
        rasters.needs_crs(tmp_path / "bad.tif")
    (tmp_path / "odd.xyz").write_bytes(xyz_grid(1, 8, (0.0, 0.0), 10.0, irregular=True))
    with pytest.raises(RasterError, match=r"odd.xyz"):
        rasters.needs_crs(tmp_path / "odd.xyz")
    (tmp_path / "g.asc").write_bytes(ascii_grid(1, 8, (0.0, 0.0), 10.0))
    assert rasters.needs_crs(tmp_path / "g.asc")
    with pytest.raises(RasterError, match=r"g.asc has no CRS and the source's metadata.json configures none"):
        rasters.assign_crs(tmp_path / "g.asc", tmp_path / "g.tif", None, what="mapterhorn file src.g")


KILLED_COG = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gnt_assets.mapterhorn import steps
    from gnt_assets.mapterhorn.chain import FileWork
    steps.cog_step(FileWork(Path(sys.argv[1]), "src.big"))
    """
)


def test_cog_step_killed_mid_write_resumes(tmp_path):
    work = FileWork(tmp_path, "src.big")
    source = work.step_dir("georeferenced") / "big.tif"
    source.parent.mkdir(parents=True)
    _tif(source, size=3072)
    work.write_record("georeferenced", [source])
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_COG, str(tmp_path)], env=env)
    temp = work.files_dir / ".tmp-big.tif"
    while not (temp.exists() and temp.stat().st_size > 0) and writer.poll() is None:
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    assert writer.wait() == -signal.SIGKILL, "the COG step finished before it could be killed"
    assert work.record("cog") is None and not (work.files_dir / "big.tif").exists() and source.exists()
    record = steps.cog_step(work)  # the rerun starts from the verified georeferenced output
    assert record["resumed"] is False and record["names"] == ["big.tif"]
    assert rasters.cog_problems(work.files_dir / "big.tif") == [] and not work.work.exists()
    assert steps.cog_step(work)["resumed"] is True


def test_the_step_checks_judge_the_records_the_steps_wrote(tmp_path):
    """The COG and polygon steps verify their outputs before recording them; the checks then judge the records and
    the files in place (cheap, per file), and refuse a COG gone empty or a polygon record without area."""
    work = FileWork(tmp_path, "src.small")
    source = work.step_dir("georeferenced") / "small.tif"
    source.parent.mkdir(parents=True)
    _tif(source, size=256)
    work.write_record("georeferenced", [source])
    cog, bounds, polygon = steps.cog_step(work), steps.bounds_step(work), steps.polygon_step(work)
    assert checks.valid_cog(cog).passed and checks.bounds_in_web_mercator(bounds).passed and checks.coverage_not_empty(polygon).passed
    (row,) = (work.bounds_path).read_text().splitlines()
    assert bounds["bbox"] == [float(v) for v in row.split(",")[1:5]]  # the union of the file's rows, for its materialization
    (work.files_dir / "small.tif").write_bytes(b"")
    assert "small.tif is empty" in checks.valid_cog(cog).metadata["problems"].value
    assert not checks.coverage_not_empty({**polygon, "area": 0.0}).passed
