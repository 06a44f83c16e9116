"""Small PNG previews of rasters, so a materialization shows what it made.

Previews are at most ``MAX_SIDE`` pixels on their long side, stretched between
the 2nd and 98th percentile of valid values, with nodata transparent. Small
grids are enlarged by a whole factor (pixels repeated) because the Dagster UI
shows the PNG at its own size: a 36 x 48 grid would be a thumbnail-sized smudge.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

MAX_SIDE = 256


@dataclass(frozen=True)
class QuickLook:
    png: bytes
    shape: tuple[int, ...]
    crs: str | None
    valid_share: float
    minimum: float | None
    mean: float | None
    maximum: float | None
    stretch: tuple[float, float] | None = None  # values drawn black and white (single band only)


def _valid_mask(array: np.ndarray, nodata: float | None) -> np.ndarray:
    valid = np.isfinite(array) if np.issubdtype(array.dtype, np.floating) else np.ones(array.shape, bool)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        valid &= array != nodata
    return valid


def _decimate(array: np.ndarray, max_side: int) -> np.ndarray:
    """Nearest-neighbour decimation on the last two axes; cheap and never invents values."""
    height, width = array.shape[-2:]
    step = max(1, int(np.ceil(max(height, width) / max_side)))
    return array[..., ::step, ::step]


def _enlarge(image: np.ndarray, max_side: int) -> np.ndarray:
    """Repeat each pixel ``max_side // long side`` times on both axes (never resamples values)."""
    factor = max(1, max_side // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _stretch_range(values: np.ndarray, valid: np.ndarray) -> tuple[float, float] | None:
    if not valid.any():
        return None
    low, high = (float(v) for v in np.percentile(values[valid], [2, 98]))
    return (low, high) if high > low else (low, low + 1)


def _stretch(values: np.ndarray, limits: tuple[float, float] | None) -> np.ndarray:
    if limits is None:
        return np.zeros(values.shape, np.uint8)
    low, high = limits
    scaled = (values.astype("float64") - low) / (high - low)
    return (np.clip(np.nan_to_num(scaled), 0, 1) * 255).astype(np.uint8)


def quicklook(
    array: np.ndarray,
    *,
    nodata: float | None = None,
    crs: str | None = None,
    max_side: int = MAX_SIDE,
) -> QuickLook:
    """Preview of a 2-D band or a ``(3, H, W)`` RGB stack.

    Numbers are computed on the full array; only the picture is decimated.
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[0] != 3):
        raise ValueError(f"quicklook takes (H, W) or (3, H, W) arrays, got shape {array.shape}")
    valid_full = _valid_mask(array, nodata)
    if array.ndim == 3:
        valid_full = valid_full.all(axis=0)
    values_full = array[..., valid_full] if array.ndim == 3 else array[valid_full]
    small = _decimate(array, max_side)
    valid = _decimate(_valid_mask(array, nodata), max_side)
    if small.ndim == 3:
        valid = valid.all(axis=0)
        bands = [_stretch(band, _stretch_range(band, valid)) for band in small]
        stretch = None
        rgba = np.dstack([*bands, np.where(valid, 255, 0).astype(np.uint8)])
    else:
        stretch = _stretch_range(small, valid)
        grey = _stretch(small, stretch)
        rgba = np.dstack([grey, grey, grey, np.where(valid, 255, 0).astype(np.uint8)])
    rgba = _enlarge(rgba, max_side)
    buffer = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG", optimize=True)
    has_values = values_full.size > 0
    return QuickLook(
        png=buffer.getvalue(),
        shape=tuple(int(s) for s in array.shape),
        crs=crs,
        valid_share=float(valid_full.mean()) if valid_full.size else 0.0,
        minimum=float(np.min(values_full)) if has_values else None,
        mean=float(np.mean(values_full, dtype="float64")) if has_values else None,
        maximum=float(np.max(values_full)) if has_values else None,
        stretch=stretch,
    )
