"""One radiometry for every provider: the cube's DN are ``reflectance = DN * 1e-4 - 0.1``.

That is the Sentinel-2 Collection-1 / processing-baseline 04.00 convention (a +1000 DN offset keeps
dark negative reflectances in uint16). Per item and band asset the DN's own scale and offset come
from ``raster:bands`` (Earth Search states them), else from ``s2:processing_baseline``
(Planetary Computer: no offset before 04.00, i.e. before 2022-01-25, and +1000 DN from then on),
and the DN are converted to the cube's. The cube states the same convention as CF
``scale_factor`` / ``add_offset``, so ``xr.open_zarr(..., mask_and_scale=True)`` gives reflectance.
"""

from __future__ import annotations

import numpy as np

from gnt_assets.core.errors import InputError

CUBE_SCALE = 1e-4
CUBE_OFFSET = -0.1
OFFSET_BASELINE = (4, 0)  # from processing baseline 04.00 on, L2A DN carry the +1000 offset
DN_OFFSET_FROM_BASELINE = -0.1  # reflectance offset those DN need


class RadiometryError(InputError):
    """An item whose DN scale cannot be told (no raster:bands offset, no processing baseline)."""


def _baseline(value: str, where: str) -> tuple[int, int]:
    try:
        major, _, minor = str(value).partition(".")
        return int(major), int(minor or 0)
    except ValueError as error:
        raise RadiometryError(f"{where}: s2:processing_baseline {value!r} is not like '05.10'") from error


def asset_radiometry(item, asset: str) -> tuple[float, float]:
    """(scale, offset) that turn the asset's DN into reflectance."""
    where = f"item {item.id} asset {asset}"
    if asset not in item.assets:
        raise RadiometryError(f"{where}: the item has no such asset (it has {sorted(item.assets)})")
    bands = item.assets[asset].extra_fields.get("raster:bands") or []
    if bands and "offset" in bands[0]:
        return float(bands[0].get("scale", 1.0)), float(bands[0]["offset"])
    baseline = item.properties.get("s2:processing_baseline")
    if baseline is None:
        raise RadiometryError(f"{where}: neither raster:bands offset/scale nor s2:processing_baseline; "
                              "its DN cannot be put on one scale with other items")
    offset = DN_OFFSET_FROM_BASELINE if _baseline(baseline, where) >= OFFSET_BASELINE else 0.0
    return CUBE_SCALE, offset


def item_radiometry(item, assets: list[str]) -> tuple[tuple[float, float], ...]:
    """Per band asset (in order), its (scale, offset)."""
    return tuple(asset_radiometry(item, asset) for asset in assets)


def to_cube_dn(values: np.ndarray, radiometry: tuple[tuple[float, float], ...]) -> np.ndarray:
    """(..., band) uint16 DN of one radiometry as the cube's DN; nodata 0 stays 0, valid DN at least 1.

    Same scale (every known Sentinel-2 case): an exact integer shift (e.g. +1000 for DN without offset).
    """
    out = np.empty(values.shape, np.uint16)
    for band, (scale, offset) in enumerate(radiometry):
        source = values[..., band]
        valid = source != 0
        if np.isclose(scale, CUBE_SCALE, rtol=1e-9, atol=0):
            shift = round((offset - CUBE_OFFSET) / CUBE_SCALE)
            if shift == 0:
                out[..., band] = source
                continue
            converted = source.astype(np.int32) + shift
        else:
            converted = np.rint((source.astype(np.float64) * scale + offset - CUBE_OFFSET) / CUBE_SCALE)
        out[..., band] = np.where(valid, np.clip(converted, 1, 65535), 0)
    return out
