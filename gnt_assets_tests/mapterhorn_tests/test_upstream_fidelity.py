"""Upstream fidelity: crs_mode override (gdal_edit -a_srs on every file) or missing; .txt XYZ, .grd and
.img files through the chain on generated files."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from gnt_assets.mapterhorn import steps
from gnt_assets.mapterhorn.archives import rasters_in
from gnt_assets.mapterhorn.catalog import CatalogError, read_metadata
from gnt_assets.mapterhorn.chain import FileWork
from gnt_assets.mapterhorn.rasters import cog_problems

LIMITS = dict(max_total_bytes=10_000_000, max_ratio=50)
ORIGIN = (500_000.0, 5_700_000.0)


def _geotiff(path, crs="EPSG:32632", size=16):
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32", crs=crs,
                   transform=from_origin(*ORIGIN, 10.0, 10.0), nodata=-9999.0)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write((np.arange(size * size, dtype="float32").reshape(size, size) + 300), 1)
    return path


def _downloaded(tmp_path, key, file):
    """A file as the download step leaves it, with its record."""
    work = FileWork(tmp_path / "root", key)
    target = work.step_dir("download") / file.name
    target.parent.mkdir(parents=True)
    file.rename(target)
    work.write_record("download", [target], url=f"https://h.example/{file.name}", md5="0" * 32, resumed=False)
    return work


def _chain(work, crs, crs_mode="override"):
    steps.unpack_step(work, **LIMITS)
    record = steps.georeference_step(work, crs, crs_mode)
    cog = steps.cog_step(work)
    return record, cog


@pytest.mark.parametrize(("mode", "expected"), [("override", "EPSG:25832"), ("missing", "EPSG:32632")])
def test_crs_mode_override_replaces_a_wrong_embedded_crs_and_missing_keeps_it(tmp_path, mode, expected):
    work = _downloaded(tmp_path, "src.wrong", _geotiff(tmp_path / "wrong.tif"))
    record, cog = _chain(work, "EPSG:25832", mode)
    with rasterio.open(cog["outputs"][0]) as dataset:
        assert dataset.crs.to_string() == expected
    assert record["crs_mode"] == mode
    assert record["overridden"] == (["wrong.tif: EPSG:32632"] if mode == "override" else [])


def test_override_leaves_a_file_already_in_the_configured_crs_as_it_is(tmp_path):
    work = _downloaded(tmp_path, "src.right", _geotiff(tmp_path / "right.tif", crs="EPSG:25832"))
    steps.unpack_step(work, **LIMITS)
    record = steps.georeference_step(work, "EPSG:25832", "override")
    assert record["assigned_crs"] is None and record["overridden"] == []


def _xyz_text(path, size=12):
    xs = ORIGIN[0] + 5 + 10 * np.arange(size)
    ys = ORIGIN[1] - 5 - 10 * np.arange(size)
    path.write_text("".join(f"{x:.1f} {y:.1f} {300 + i * size + j:.2f}\n" for i, y in enumerate(ys) for j, x in enumerate(xs)))
    return path


def _converted(tmp_path, name, driver):
    return rasterio.shutil.copy(str(_geotiff(tmp_path / f"src_{name}.tif", crs=None)), str(tmp_path / name), driver=driver) or tmp_path / name


@pytest.mark.parametrize("name", ["points.txt", "grid.grd", "grid.img"])
def test_txt_xyz_grd_and_img_files_become_valid_cogs(tmp_path, name):
    file = _xyz_text(tmp_path / name) if name.endswith(".txt") else _converted(tmp_path, name, {"grd": "GSBG", "img": "HFA"}[name[-3:]])
    work = _downloaded(tmp_path, f"src.{name.split('.')[0]}", file)
    record, cog = _chain(work, "EPSG:25832")
    (path,) = cog["outputs"]
    assert cog_problems(path) == [] and record["assigned_crs"] == "EPSG:25832"
    with rasterio.open(path) as dataset:
        assert dataset.crs.to_string() == "EPSG:25832" and dataset.shape == ((12, 12) if name.endswith(".txt") else (16, 16))
        assert dataset.read(1).min() == pytest.approx(300, abs=0.01)


def test_a_readme_txt_in_an_archive_is_not_a_raster(tmp_path):
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("README.txt", "Digital terrain model, 1 m.\nX Y Z in ETRS89 / UTM 32N\n")
        archive.writestr("dgm/points.txt", "X Y Z\n500005.0 5699995.0 301.5\n500015.0 5699995.0 302.5\n")
    (tmp_path / "out").mkdir()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        archive.extractall(tmp_path / "out")
    assert [p.name for p in rasters_in(tmp_path / "out")] == ["points.txt"]


def test_an_unknown_crs_mode_is_refused_naming_the_source(tmp_path):
    (tmp_path / "src").mkdir()
    fields = {"name": "src", "resolution-m": 1, "website": "w", "license": "l", "producer": "p", "crs": "EPSG:25832"}
    (tmp_path / "src" / "metadata.json").write_text(json.dumps({**fields, "crs_mode": "sometimes"}))
    with pytest.raises(CatalogError, match=r"source src: metadata\.json crs_mode must be one of override, missing"):
        read_metadata(tmp_path, "src")
    (tmp_path / "src" / "metadata.json").write_text(json.dumps(fields))
    assert read_metadata(tmp_path, "src").crs_mode == "override"


def test_the_volumes_of_a_multi_volume_7z_are_one_file_and_a_gap_is_named():
    from gnt_assets.mapterhorn.catalog import parse_file_list

    text = "https://h/x/dgm.7z.002\nhttps://h/x/other.tif\nhttps://h/x/dgm.7z.001\nhttps://h/x/dgm.7z.003\n"
    entries = parse_file_list("src", text)
    assert [(e.key, e.line, e.filename) for e in entries] == [("src.dgm", 1, "dgm.7z"), ("src.other", 2, "other.tif")]
    assert entries[0].url == "https://h/x/dgm.7z.001" and entries[0].volumes == tuple(f"https://h/x/dgm.7z.00{i}" for i in (1, 2, 3))
    with pytest.raises(CatalogError, match=r"volumes of https://h/x/dgm\.7z are numbered \['001', '003'\]"):
        parse_file_list("src", "https://h/x/dgm.7z.001\nhttps://h/x/dgm.7z.003\n")


def test_a_multi_volume_7z_is_downloaded_joined_verified_and_unpacked(tmp_path):
    import py7zr

    from gnt_assets.mapterhorn.catalog import parse_file_list
    from gnt_assets.mapterhorn.local import SourceServer
    from gnt_assets.mapterhorn.resources import MapterhornSourcesResource

    www = tmp_path / "www" / "src"
    www.mkdir(parents=True)
    _geotiff(tmp_path / "dgm.tif", crs=None, size=64)
    with py7zr.SevenZipFile(tmp_path / "dgm.7z", "w") as archive:
        archive.write(tmp_path / "dgm.tif", "dgm/dgm.tif")
    data = (tmp_path / "dgm.7z").read_bytes()
    third = len(data) // 3 + 1
    for i in range(3):  # 7-Zip's split volumes: the archive cut at byte boundaries
        (www / f"dgm.7z.{i + 1:03d}").write_bytes(data[i * third : (i + 1) * third])
    with SourceServer(tmp_path / "www") as server:
        (entry,) = parse_file_list("src", "".join(f"{server.base_url}/src/dgm.7z.{i:03d}\n" for i in (1, 2, 3)))
        resource = MapterhornSourcesResource(work_dir=str(tmp_path / "root"), retries=0)
        work = FileWork(resource.root, entry.key)
        record = steps.download_step(work, entry, resource.fetch)
    assert record["volumes"] == list(entry.volumes) and Path(record["outputs"][0]).read_bytes() == data
    assert not (work.step_dir("download") / "volumes").exists()
    steps.unpack_step(work, **LIMITS)
    _, cog = _chain_after_unpack(work)
    with rasterio.open(cog["outputs"][0]) as dataset:
        assert dataset.crs.to_string() == "EPSG:25832" and dataset.shape == (64, 64)


def _chain_after_unpack(work):
    return steps.georeference_step(work, "EPSG:25832"), steps.cog_step(work)
