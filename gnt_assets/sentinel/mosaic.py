"""One mosaic chunk: search a month of scenes for a grid cell, load them onto the cell's GeoBox,
mask everything but SCL 4/5 (vegetation, bare soil) with closing/opening, take the per-pixel
median over time and write the cell's region of the cube. Runs on a Dask worker (plain arguments)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import bottleneck as bn
import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox

from gnt_assets.core.errors import TransientError, is_transient
from gnt_assets.core.quicklook import QuickLook, quicklook
from gnt_assets.sentinel.cube import CubeLayout, region_dataset
from gnt_assets.sentinel.cube_store import CubeStore
from gnt_assets.sentinel.radiometry import item_radiometry, to_cube_dn
from gnt_assets.sentinel.stac import SceneQuery, StacPagingError, search_scenes

CLEAR_SCL = (4, 5)
MORPHOLOGY_RADIUS = 5
# Closing then opening is four disk passes: a pixel's mask depends on SCL up to 4 radii away. A cell
# loaded with that much halo, masked and cropped, equals the same pixels of one whole-area run.
HALO_PX = 4 * MORPHOLOGY_RADIUS


def padded_geobox(geobox: GeoBox, halo: int) -> GeoBox:
    """The geobox grown by ``halo`` pixels on every side, on the same pixel grid."""
    height, width = geobox.shape
    return GeoBox((height + 2 * halo, width + 2 * halo), geobox.affine @ Affine.translation(-halo, -halo), geobox.crs)


# Measured on a 6000 x 6000 px cell, 21 dates (benchmarks/sentinel_cell_memory.py WINDOW nowrite dates21): whole cell, killed out of memory
# at 20 GB; 2048 px windows 4.4 GB peak; 1024 px windows 3.0 GB, which is then the cell's own conversion for the
# write (float64 reflectance, about 26 bytes per pixel and band), not the load.
WINDOW_PX = 1024


def cell_windows(shape: tuple[int, int], size: int) -> list[tuple[slice, slice]]:
    """The cell's (rows, cols) cut into windows of at most ``size`` pixels a side, row-major."""
    height, width = shape
    return [(slice(r, min(r + size, height)), slice(c, min(c + size, width)))
            for r in range(0, height, size) for c in range(0, width, size)]


class SceneLoadError(TransientError):
    pass


def cloud_mask(scl: np.ndarray, radius: int = MORPHOLOGY_RADIUS) -> np.ndarray:
    """True where a (time, y, x) pixel is unusable: not SCL 4/5, closed then opened with a disk (the seed's cleanup).

    Outside the image counts as unusable for the erosions (the seed's ``scipy.ndimage`` call
    with ``border_value=1``), so a masked area touching the edge is not eroded away from it.
    """
    bad = ~np.isin(scl, CLEAR_SCL)
    if radius <= 0:
        return bad
    for date in bad:  # one date at a time: its few MB stay in cache across the passes
        closed = ~disk_dilation(~disk_dilation(date, radius), radius)  # erosion = not dilation of not
        date[...] = disk_dilation(~disk_dilation(~closed, radius), radius)
    return bad


def disk_dilation(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of a (y, x) mask by the disk ``dx² + dy² <= radius²``, outside counting as False.

    The disk is a stack of row segments, so the dilation is an OR of the mask widened along x
    (one segment width at a time) and shifted along y: about 5 x radius array passes, against
    scipy's one pass per disk element (81 for radius 5).
    """
    half_widths = {dy: math.isqrt(radius * radius - dy * dy) for dy in range(-radius, radius + 1)}
    widened, row = {0: mask}, mask.copy()
    for width in range(1, radius + 1):
        row[:, width:] |= mask[:, :-width]
        row[:, :-width] |= mask[:, width:]
        if width in half_widths.values():
            widened[width] = row.copy()
    out = np.zeros_like(mask)
    height = mask.shape[0]
    for dy, width in half_widths.items():
        if abs(dy) >= height:
            continue
        if dy >= 0:
            out[: height - dy] |= widened[width][dy:]
        else:
            out[-dy:] |= widened[width][:dy]
    return out


# Above this bottleneck's per-pixel selection may beat a sorting network's whole-array passes. Measured from uint16 DN
# and a mask (512 x 512 x 4 bands, 30 % masked, CPU s): network 0.09 against bottleneck 0.41 at 20 dates, 0.26
# against 2.10 at 64 (the float copy the bottleneck path needs costs more than the network's passes).
NETWORK_MAX_DATES = 64


def sorting_network(n: int) -> list[tuple[int, int]]:
    """Batcher's odd-even merge sort as compare-exchange pairs, for any n (O(n log^2 n) pairs)."""
    pairs, p = [], 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


BLOCK_ROWS = 16  # rows sorted at a time: a month's slices of 16 rows stay in cache across the network's passes


def masked_median(bands: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """Median over time of (time, y, x, band) values ignoring masked and zero (nodata) ones; uint16, fill 0.

    Equal to ``rint(bottleneck.nanmedian)`` of the NaN-masked floats (half to even). For a month's
    few dates it sorts the uint16 time slices in place with a sorting network (masked values as
    65535 go last) and picks the middle of each pixel's valid count: no float copy of the stack.
    """
    dates = bands.shape[0]
    if dates > NETWORK_MAX_DATES:
        values = np.where(bad[..., np.newaxis] | (bands == 0), np.float32(np.nan), bands.astype(np.float32))
        median = np.nan_to_num(np.rint(bn.nanmedian(values, axis=0)), nan=0.0)
        return np.clip(median, 0, 65535).astype(np.uint16)
    median = np.empty(bands.shape[1:], np.uint16)
    for row in range(0, bands.shape[1], BLOCK_ROWS):
        rows = slice(row, row + BLOCK_ROWS)
        median[rows] = _network_median(bands[:, rows], bad[:, rows])
    return median


def _network_median(bands: np.ndarray, bad: np.ndarray) -> np.ndarray:
    dates = bands.shape[0]
    shifted = bands - np.uint16(1)  # nodata 0 wraps to 65535, the "ignore" marker; data is value - 1
    shifted |= (np.uint16(0) - bad.astype(np.uint16))[..., np.newaxis]  # masked dates: all bits set, 65535
    count = (shifted != 65535).sum(axis=0, dtype=np.int32)
    slices = list(shifted)
    spare = np.empty_like(slices[0])
    for a, b in sorting_network(dates):  # two passes per pair: min into a spare buffer, max in place, swap
        np.minimum(slices[a], slices[b], out=spare)
        np.maximum(slices[a], slices[b], out=slices[b])
        slices[a], spare = spare, slices[a]
    middle = np.maximum(count, 1)
    low = _pick(slices, (middle - 1) // 2).astype(np.uint32)
    high = _pick(slices, middle // 2).astype(np.uint32)
    total = low + high + 2  # undo the shift of both
    half = total >> 1
    median = (half + (total & 1) * (half & 1)).astype(np.uint16)  # (low + high) / 2 rounded half to even
    median[count == 0] = 0
    return median


def _pick(slices: list[np.ndarray], index: np.ndarray) -> np.ndarray:
    """Per pixel, ``slices[index]``: one masked copy per rank (a few for a month's dates), cheaper
    than ``take_along_axis`` on a stacked copy."""
    picked = slices[0].copy()
    for rank in range(1, int(index.max(initial=0)) + 1):
        np.copyto(picked, slices[rank], where=index == rank)
    return picked


@dataclass(frozen=True)
class ChunkJob:
    chunk: str
    month: str
    query: SceneQuery
    band_assets: dict[str, str]  # cube band -> STAC asset name
    scl_asset: str
    layout: CubeLayout
    cube: CubeStore
    modifier: Callable | None = None
    aws_unsigned: bool = False
    attempts: int = 6  # transient failures (search, read, write) are retried before the cell counts as failed (the seed's retries=5)
    backoff_s: float = 2.0  # doubled after each failed attempt
    halo_px: int = HALO_PX  # loaded and masked around the cell, then cropped: no seams between cells
    window_px: int = WINDOW_PX  # a big cell is loaded, masked and reduced one window (plus halo) at a time
    ensure_months: tuple[str, ...] = ()  # a cell's own store (Major TOM): created or grown to these months by the job

    @property
    def load_geobox(self) -> GeoBox:
        return padded_geobox(self.layout.cell_geobox(self.chunk), self.halo_px)


@dataclass
class ChunkResult:
    chunk: str
    month: str
    success: bool
    scenes: int = 0
    valid_share: float = 0.0
    clear_pixels_unfilled: int = 0
    minimum: int | None = None
    maximum: int | None = None
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    attempts: int = 1
    look: QuickLook | None = None


def load_scenes(job: ChunkJob, items: list, geobox: GeoBox | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(time, y, x, band) reflectance DN on the cube's one scale (bilinear) and (time, y, x) SCL (nearest)
    on ``geobox`` (default: the cell's, with its halo). Items are loaded per radiometry (``raster:bands`` or
    processing baseline), each group's DN converted to the cube's, then the groups' dates merged in time order."""
    assets = list(job.band_assets.values())
    geobox = job.load_geobox if geobox is None else geobox
    groups: dict[tuple, list] = {}
    for item in items:
        groups.setdefault(item_radiometry(item, assets), []).append(item)
    loaded = [_load_group(job, group, radiometry, geobox) for radiometry, group in groups.items()]
    if len(loaded) == 1:
        return loaded[0][1], loaded[0][2]
    order = np.argsort(np.concatenate([times for times, _, _ in loaded]), kind="stable")
    bands = np.concatenate([b for _, b, _ in loaded])[order]
    scl = np.concatenate([s for _, _, s in loaded])[order]
    return bands, scl


def _load_group(job: ChunkJob, items: list, radiometry: tuple, geobox: GeoBox) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import odc.stac

    if job.aws_unsigned:
        odc.stac.configure_rio(cloud_defaults=True, aws={"aws_unsigned": True})
    assets = list(job.band_assets.values())
    try:
        data = odc.stac.load(items, bands=[job.scl_asset, *assets], geobox=geobox,
                             resampling={job.scl_asset: "nearest", "*": "bilinear"}, groupby="solar_day",
                             fail_on_error=True)
    except Exception as error:
        raise SceneLoadError(f"month {job.month} chunk {job.chunk}: reading scenes failed "
                             f"({type(error).__name__}: {error})") from error
    bands = to_cube_dn(np.stack([data[name].values for name in assets], axis=-1), radiometry)
    return data["time"].values, bands, data[job.scl_asset].values


def mosaic_chunk(job: ChunkJob) -> ChunkResult:
    """Search, load, mask, median, write; the region is written only when everything before succeeded."""
    durations: dict[str, float] = {}
    started = time.perf_counter()
    items = search_scenes(job.query, job.modifier)
    durations["search_s"] = time.perf_counter() - started
    height, width = job.layout.cell_geobox(job.chunk).shape
    nbands = len(job.band_assets)
    median = np.zeros((height, width, nbands), np.uint16)
    clear_any = np.zeros((height, width), bool)
    padded, halo = job.load_geobox, job.halo_px
    if items:
        durations.update(dict.fromkeys(("load_s", "mask_s", "median_s"), 0.0))
    for rows, cols in cell_windows((height, width), job.window_px) if items else []:
        # The window plus the halo on every side (in the padded geobox's pixels), masked, then cropped.
        mark = time.perf_counter()
        bands, scl = load_scenes(job, items, padded[rows.start : rows.stop + 2 * halo, cols.start : cols.stop + 2 * halo])
        durations["load_s"] += time.perf_counter() - mark
        mark = time.perf_counter()
        inner = (slice(None), slice(halo, halo + rows.stop - rows.start), slice(halo, halo + cols.stop - cols.start))
        bad = (cloud_mask(scl) | (bands == 0).any(axis=-1))[inner]
        del scl
        durations["mask_s"] += time.perf_counter() - mark
        mark = time.perf_counter()
        median[rows, cols] = masked_median(bands[inner], bad)
        durations["median_s"] += time.perf_counter() - mark
        clear_any[rows, cols] = (~bad).any(axis=0)
        del bands, bad
    filled = (median == 0).all(axis=-1)
    mark = time.perf_counter()
    if job.ensure_months:  # only this cell's jobs write this store (the run prepared the shared cubes)
        job.cube.ensure(job.layout, list(job.ensure_months), list(job.band_assets))
    job.cube.write(region_dataset(job.layout, job.chunk, job.month, list(job.band_assets), median), job.layout, job.chunk, job.month)
    durations["write_s"] = time.perf_counter() - mark
    durations["total_s"] = time.perf_counter() - started
    valid = median[~filled]
    rgb = np.moveaxis(median[..., [list(job.band_assets).index(b) for b in ("red", "green", "blue")]], -1, 0) \
        if {"red", "green", "blue"} <= set(job.band_assets) else median[..., 0]
    return ChunkResult(
        chunk=job.chunk, month=job.month, success=True, scenes=len(items),
        valid_share=float((~filled).mean()), clear_pixels_unfilled=int((clear_any & filled).sum()),
        minimum=int(valid.min()) if valid.size else None, maximum=int(valid.max()) if valid.size else None,
        durations={k: round(v, 4) for k, v in durations.items()},
        look=quicklook(rgb, nodata=0, crs=str(job.layout.geobox.crs)),
    )


def mosaic_chunk_logged(job: ChunkJob) -> ChunkResult:
    """mosaic_chunk that retries transient failures (``is_transient``: search, scene reads, a flaky store write)
    with exponential backoff and reports the final failure as a result, so one bad cell never hides the
    others' results. The region is only marked complete on success."""
    for attempt in range(1, job.attempts + 1):
        try:
            result = mosaic_chunk(job)
            result.attempts = attempt
            return result
        except Exception as error:
            failure = error
            if isinstance(error, StacPagingError) or not is_transient(error) or attempt == job.attempts:
                break
            time.sleep(job.backoff_s * 2 ** (attempt - 1))
    return ChunkResult(chunk=job.chunk, month=job.month, success=False, attempts=attempt,
                       error=f"{type(failure).__name__}: {failure}")
