"""The area of interest: one geographic geometry from any OGR-readable file or a bbox."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pyogrio
from shapely import make_valid
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.validation import explain_validity

from gnt_assets.core.errors import InputError


class AoiError(InputError):
    """An AOI that cannot drive a grid: the message names the source and the problem."""


def _check_geographic(geometry: BaseGeometry, source: str) -> BaseGeometry:
    if geometry.is_empty:
        raise AoiError(f"AOI {source}: geometry is empty")
    if not geometry.is_valid:
        raise AoiError(f"AOI {source}: invalid geometry ({explain_validity(geometry)})")
    min_x, min_y, max_x, max_y = geometry.bounds
    if min_x < -180 or max_x > 180 or min_y < -90 or max_y > 90:
        raise AoiError(f"AOI {source}: bounds {geometry.bounds} are not longitude/latitude degrees")
    if max_x - min_x > 180:
        raise AoiError(
            f"AOI {source}: spans {max_x - min_x:.1f} degrees of longitude, i.e. it crosses the antimeridian; "
            "split it into one AOI per side"
        )
    return geometry


def aoi_from_bbox(bbox: tuple[float, float, float, float]) -> BaseGeometry:
    """A bbox (min_lon, min_lat, max_lon, max_lat) as the AOI; min_lon > max_lon means it crosses 180."""
    min_x, min_y, max_x, max_y = (float(v) for v in bbox)
    if min_x > max_x:
        raise AoiError(f"AOI bbox {bbox}: min_lon > max_lon crosses the antimeridian; split it into two AOIs")
    if min_y >= max_y or min_x == max_x:
        raise AoiError(f"AOI bbox {bbox}: has no area")
    return _check_geographic(box(min_x, min_y, max_x, max_y), f"bbox {bbox}")


def load_geometry_file(geometry_path: str | Path, layer: str | None = None) -> BaseGeometry:
    """All features of one layer unioned into one geometry in EPSG:4326."""
    source = f"{geometry_path}" + (f" layer {layer!r}" if layer else "")
    try:
        layers = [name for name, _ in pyogrio.list_layers(geometry_path)]
    except Exception as error:
        raise AoiError(f"AOI {source}: cannot be read as a vector file ({error})") from error
    if layer is not None and layer not in layers:
        raise AoiError(f"AOI {source}: no such layer; the file has {layers}")
    if layer is None and len(layers) > 1:
        raise AoiError(f"AOI {source}: the file has {len(layers)} layers {layers}; name the one to use (config 'layer')")
    frame = gpd.read_file(geometry_path, layer=layer)
    if frame.empty or frame.geometry.isna().all():
        raise AoiError(f"AOI {source}: has no features")
    if frame.crs is None:
        raise AoiError(f"AOI {source}: has no CRS")
    invalid = frame.index[~frame.geometry.is_valid].tolist()
    if invalid:
        reason = explain_validity(frame.geometry[invalid[0]])
        raise AoiError(f"AOI {source}: invalid geometry in feature(s) {invalid[:5]} ({reason})")
    geometry = frame.to_crs("EPSG:4326").geometry.union_all()
    return _check_geographic(make_valid(geometry), source)
