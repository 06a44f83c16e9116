"""Per-file raster steps: set CRS, Cloud-Optimized GeoTIFF, EPSG:3857 bounds, coverage polygon.

The COG options are the upstream ``gdal_translate`` ones, applied through
rasterio's GDAL; every output is written under a temporary name, validated and
read back before it is renamed into place.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from pyproj import Transformer
from rasterio.errors import RasterioIOError
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from gnt_assets.core.errors import InputError

COG_OPTIONS = {
    "COMPRESS": "LERC",
    "MAX_Z_ERROR": "0.001",
    "BLOCKSIZE": "512",
    "OVERVIEWS": "NONE",
    "SPARSE_OK": "YES",
    "BIGTIFF": "YES",
}
MAX_LATITUDE = 85.051129
BOUNDS_HEADER = "filename,left,bottom,right,top,width,height"


class RasterError(InputError):
    """A raster that cannot be read, georeferenced or converted; the message names the file."""


def open_raster(path: Path) -> rasterio.DatasetReader:
    try:
        return rasterio.open(path)
    except RasterioIOError as error:
        raise RasterError(f"{path.name}: not a readable raster ({error})") from error


def needs_crs(path: Path) -> bool:
    with open_raster(path) as dataset:
        return dataset.crs is None


def embedded_crs(path: Path) -> str | None:
    with open_raster(path) as dataset:
        return dataset.crs.to_string() if dataset.crs else None


def same_crs(a: str, b: str) -> bool:
    try:
        return rasterio.crs.CRS.from_user_input(a) == rasterio.crs.CRS.from_user_input(b)
    except rasterio.errors.CRSError:
        return False


def assign_crs(src: Path, dst: Path, crs: str | None, *, what: str) -> Path:
    """Copy ``src`` to a GeoTIFF carrying ``crs`` (the upstream ``-a_srs``); the CRS must be configured."""
    if crs is None:
        raise RasterError(f"{what}: {src.name} has no CRS and the source's metadata.json configures none; add \"crs\"")
    try:
        rasterio.crs.CRS.from_user_input(crs)
    except rasterio.errors.CRSError as error:
        raise RasterError(f"{what}: configured crs {crs!r} is not a CRS ({error})") from error
    temp = dst.with_name(".tmp-" + dst.name)
    try:
        rasterio.shutil.copy(str(src), str(temp), driver="GTiff", TILED="YES", BIGTIFF="IF_SAFER")
        with rasterio.open(temp, "r+") as dataset:
            dataset.crs = crs
    except RasterioIOError as error:
        temp.unlink(missing_ok=True)
        raise RasterError(f"{what}: {src.name} cannot be read ({error})") from error
    os.replace(temp, dst)
    return dst


def write_cog(src: Path, dst: Path) -> Path:
    """Translate ``src`` into a LERC COG at ``dst`` with exactly ``COG_OPTIONS``, validated and read back."""
    temp = dst.with_name(".tmp-" + dst.name)
    try:
        rasterio.shutil.copy(str(src), str(temp), driver="COG", **COG_OPTIONS)
    except RasterioIOError as error:
        temp.unlink(missing_ok=True)
        raise RasterError(f"{src.name}: GDAL could not read it to write a COG ({error})") from error
    problems = cog_problems(temp, src)
    if problems:
        temp.unlink(missing_ok=True)
        raise RasterError(f"{src.name}: the COG failed validation: {'; '.join(problems)}")
    os.replace(temp, dst)
    return dst


def cog_problems(cog: Path, src: Path | None = None) -> list[str]:
    """Why ``cog`` is not the COG we promise (empty when it is); compares pixels with ``src`` if given."""
    valid, errors, _ = cog_validate(str(cog), quiet=True)
    problems = list(errors) if not valid else []
    with rasterio.open(cog) as out:
        meta = out.tags(ns="IMAGE_STRUCTURE")
        if meta.get("COMPRESSION") != "LERC" or out.block_shapes[0] != (512, 512):
            problems.append(f"compression {meta.get('COMPRESSION')} blocks {out.block_shapes[0]}, want LERC 512x512")
        if out.overviews(1):
            problems.append("has overviews; OVERVIEWS=NONE wanted")
        if src is not None:
            problems += _readback_problems(src, out)
    return problems


def _valid(dataset: rasterio.DatasetReader, data: np.ndarray, window: Window) -> np.ndarray:
    """Valid pixels: from the nodata value when there is one (no second read), else GDAL's mask."""
    nodata = dataset.nodata
    if nodata is None:
        return dataset.read_masks(window=window) > 0
    return ~np.isnan(data) if np.isnan(nodata) else data != nodata


def _readback_problems(src: Path, out: rasterio.DatasetReader) -> list[str]:
    """Compare the COG with its input in 512-row strips: same nodata mask, values within MAX_Z_ERROR.

    The strips are dealt round-robin to parallel threads (GDAL decodes LERC without the GIL);
    each thread opens its own dataset handles, which are not safe to share across threads.
    """
    with rasterio.open(src) as original:
        if (original.width, original.height, original.count) != (out.width, out.height, out.count):
            return ["shape differs from the input"]
    strips = list(range(0, out.height, 512))
    workers = max(1, min(len(strips), os.cpu_count() or 1, 4))
    bands = [strips[i::workers] for i in range(workers)]
    with ThreadPoolExecutor(workers) as pool:
        found = [p for problems in pool.map(lambda rows: _strip_problems(src, Path(out.name), rows), bands) for p in problems]
    return [min(found)[1]] if found else []


def _strip_problems(src: Path, cog: Path, rows: list[int]) -> list[tuple[int, str]]:
    """The first problem (row, message) among these strips, if any."""
    with rasterio.open(src) as original, rasterio.open(cog) as out:
        floating = np.issubdtype(np.dtype(out.dtypes[0]), np.floating)
        for row in rows:
            window = Window(0, row, out.width, min(512, out.height - row))
            a, b = original.read(window=window), out.read(window=window)
            valid = _valid(original, a, window)
            if not np.array_equal(valid, _valid(out, b, window)):
                return [(row, f"nodata mask differs in rows {row}-{row + window.height}")]
            if not valid.any():
                continue
            # In the raster's own dtype: the difference of two nearby floats is exact (Sterbenz), and no copies.
            worst = float(np.max(np.abs(a - b), where=valid, initial=0))
            # LERC bounds the error at MAX_Z_ERROR before the value is rounded to its dtype (one ULP of the largest value).
            ulp = float(np.spacing(np.max(np.abs(a), where=valid, initial=0))) if floating else 0.0
            if worst > float(COG_OPTIONS["MAX_Z_ERROR"]) + ulp + 1e-9:
                return [(row, f"values differ by {worst} (more than MAX_Z_ERROR) in rows {row}-{row + window.height}")]
    return []


@dataclass(frozen=True)
class Bounds:
    filename: str
    left: float
    bottom: float
    right: float
    top: float
    width: int
    height: int

    def csv_row(self) -> str:
        return f"{self.filename},{self.left!r},{self.bottom!r},{self.right!r},{self.top!r},{self.width},{self.height}"


def web_mercator_bounds(west: float, south: float, east: float, north: float) -> tuple[float, float, float, float]:
    """Lon/lat bounds to EPSG:3857, latitudes clamped to +-85.051129.

    A box crossing the antimeridian (``west > east``) covers both sides, which in
    one web-mercator row means the full width.
    """
    if west > east:
        west, east = -180.0, 180.0
    south, north = (max(-MAX_LATITUDE, min(MAX_LATITUDE, v)) for v in (south, north))
    to_3857 = Transformer.from_crs(4326, 3857, always_xy=True)
    left, bottom = to_3857.transform(west, south)
    right, top = to_3857.transform(east, north)
    return left, bottom, right, top


def raster_bounds(cog: Path) -> Bounds:
    with open_raster(cog) as dataset:
        if dataset.crs is None:
            raise RasterError(f"{cog.name}: no CRS, cannot compute EPSG:3857 bounds")
        lonlat = transform_bounds(dataset.crs, "EPSG:4326", *dataset.bounds, densify_pts=21)
        width, height = dataset.width, dataset.height
    box = web_mercator_bounds(*lonlat)
    if not all(math.isfinite(v) for v in (*lonlat, *box)):
        raise RasterError(f"{cog.name}: bounds {lonlat} become non-finite in EPSG:3857")
    return Bounds(cog.name, *box, width, height)


def coverage_polygon(cog: Path) -> gpd.GeoDataFrame:
    """The valid-pixel footprint (nodata stays out) as one dissolved polygon in the raster's CRS."""
    with open_raster(cog) as dataset:
        pieces = []
        for _, window in dataset.block_windows(1):
            mask = dataset.read_masks(1, window=window) > 0
            if not mask.any():
                continue
            transform = dataset.window_transform(window)
            shapes = rasterio.features.shapes(mask.astype("uint8"), mask=mask, transform=transform)
            pieces.extend(shapely.geometry.shape(geom) for geom, _ in shapes)
        crs = dataset.crs
    union = shapely.make_valid(shapely.union_all(pieces)) if pieces else shapely.Polygon()
    return gpd.GeoDataFrame({"filename": [cog.name]}, geometry=[union], crs=crs)
