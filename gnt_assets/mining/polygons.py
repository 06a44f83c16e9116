"""Mine polygons (Maus et al. style: ``ISO3_CODE``, ``COUNTRY_NAME``, ``AREA``), validated row by row.

Rows that cannot be used are kept, with the reason and the file's name, in a
rejects table instead of being dropped silently; only a file that is unusable as a
whole raises. Per row, in order:

* a ring that jumps more than 180 degrees of longitude between two vertices was
  drawn across the antimeridian (179.95 -> -179.95): it is unwrapped (western
  vertices + 360) and split at 180 into a MultiPolygon of its two sides, each in
  [-180, 180], as the clustering expects (``clusters.unwrapped_bounds``);
* an invalid geometry is repaired with ``make_valid`` (its polygonal part); one
  with no polygonal part left is rejected, with GEOS's explanation;
* a polygon wider or taller than :data:`MAX_MINE_DEGREES` is rejected: no mine is
  that large, and its export region would be (the 359.9-degree "cluster");
* an exact duplicate (same country, same normalized geometry) of an earlier row is
  rejected as ``duplicate of row N`` (the WARN check lists it by row).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely

from gnt_assets.core.errors import InputError

COLUMNS = ("ISO3_CODE", "COUNTRY_NAME", "AREA")
ISO3_CODES = frozenset(
    ["AFG", "ALA", "ALB", "DZA", "ASM", "AND", "AGO", "AIA", "ATA", "ATG", "ARG", "ARM", "ABW", "AUS", "AUT", "AZE", "BHS", "BHR", "BGD", "BRB", "BLR", "BEL", "BLZ", "BEN", "BMU", "BTN", "BOL", "BES", "BIH", "BWA", "BVT", "BRA", "IOT", "BRN", "BGR", "BFA", "BDI", "CPV", "KHM", "CMR", "CAN", "CYM", "CAF", "TCD", "CHL", "CHN", "CXR", "CCK", "COL", "COM", "COG", "COD", "COK", "CRI", "CIV", "HRV", "CUB", "CUW", "CYP", "CZE", "DNK", "DJI", "DMA", "DOM", "ECU", "EGY", "SLV", "GNQ", "ERI", "EST", "SWZ", "ETH", "FLK", "FRO", "FJI", "FIN", "FRA", "GUF", "PYF", "ATF", "GAB", "GMB", "GEO", "DEU", "GHA", "GIB", "GRC", "GRL", "GRD", "GLP", "GUM", "GTM", "GGY", "GIN", "GNB", "GUY", "HTI", "HMD", "VAT", "HND", "HKG", "HUN", "ISL", "IND", "IDN", "IRN", "IRQ", "IRL", "IMN", "ISR", "ITA", "JAM", "JPN", "JEY", "JOR", "KAZ", "KEN", "KIR", "PRK", "KOR", "KWT", "KGZ", "LAO", "LVA", "LBN", "LSO", "LBR", "LBY", "LIE", "LTU", "LUX", "MAC", "MDG", "MWI", "MYS", "MDV", "MLI", "MLT", "MHL", "MTQ", "MRT", "MUS", "MYT", "MEX", "FSM", "MDA", "MCO", "MNG", "MNE", "MSR", "MAR", "MOZ", "MMR", "NAM", "NRU", "NPL", "NLD", "NCL", "NZL", "NIC", "NER", "NGA", "NIU", "NFK", "MKD", "MNP", "NOR", "OMN", "PAK", "PLW", "PSE", "PAN", "PNG", "PRY", "PER", "PHL", "PCN", "POL", "PRT", "PRI", "QAT", "REU", "ROU", "RUS", "RWA", "BLM", "SHN", "KNA", "LCA", "MAF", "SPM", "VCT", "WSM", "SMR", "STP", "SAU", "SEN", "SRB", "SYC", "SLE", "SGP", "SXM", "SVK", "SVN", "SLB", "SOM", "ZAF", "SGS", "SSD", "ESP", "LKA", "SDN", "SUR", "SJM", "SWE", "CHE", "SYR", "TWN", "TJK", "TZA", "THA", "TLS", "TGO", "TKL", "TON", "TTO", "TUN", "TUR", "TKM", "TCA", "TUV", "UGA", "UKR", "ARE", "GBR", "USA", "UMI", "URY", "UZB", "VUT", "VEN", "VNM", "VGB", "VIR", "WLF", "ESH", "YEM", "ZMB", "ZWE", "XKX"]
)


MAX_MINE_DEGREES = 5.0


class PolygonFileError(InputError):
    """The polygon file as a whole cannot be used."""


@dataclass(frozen=True)
class ValidatedPolygons:
    valid: gpd.GeoDataFrame  # with ``mine_id`` = row number in the source file
    rejects: gpd.GeoDataFrame  # the rejected rows with ``mine_id``, ``reason`` and ``source`` (the file)
    made_valid: int
    unwrapped: int = 0  # rings drawn across the antimeridian, unwrapped and split


def _jumps(ring) -> bool:
    x = np.asarray(ring.coords)[:, 0]
    return len(x) > 1 and float(np.abs(np.diff(x)).max()) > 180.0


def _shift_west(ring) -> np.ndarray:
    coords = np.asarray(ring.coords)
    return np.c_[np.where(coords[:, 0] < 0, coords[:, 0] + 360.0, coords[:, 0]), coords[:, 1]]


def unwrap_antimeridian(geometry):
    """A polygon (or part) whose ring jumps across the antimeridian, unwrapped and split at 180 into its two sides;
    other geometries unchanged. Returns (geometry, whether it was unwrapped)."""
    if geometry is None or geometry.is_empty or geometry.geom_type not in ("Polygon", "MultiPolygon"):
        return geometry, False
    parts = list(shapely.get_parts(geometry))
    if not any(_jumps(p.exterior) for p in parts):
        return geometry, False
    pieces = []
    for part in parts:
        if not _jumps(part.exterior):
            pieces.append(part)
            continue
        unwrapped = shapely.make_valid(shapely.Polygon(_shift_west(part.exterior), [_shift_west(r) for r in part.interiors]))
        west = shapely.intersection(unwrapped, shapely.box(-180.0, -90.0, 180.0, 90.0))
        east = shapely.affinity.translate(shapely.intersection(unwrapped, shapely.box(180.0, -90.0, 540.0, 90.0)), -360.0)
        pieces += [g for g in (*shapely.get_parts(_polygonal(west)), *shapely.get_parts(_polygonal(east))) if g.geom_type == "Polygon" and not g.is_empty]
    return shapely.MultiPolygon(pieces), True


def _span(geometry) -> tuple[float, float]:
    """Width and height in degrees; a geometry split at the antimeridian measured across it."""
    minx, miny, maxx, maxy = geometry.bounds
    if minx <= -179.0 and maxx >= 179.0:
        shifted = [shapely.affinity.translate(p, 360.0) if p.bounds[2] <= 0 else p for p in shapely.get_parts(geometry)]
        minx, _, maxx, _ = shapely.union_all(shifted).bounds
    return maxx - minx, maxy - miny


def _reason(geometry, iso3) -> str | None:
    if geometry is None or geometry.is_empty:
        return "empty geometry"
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        return f"{geometry.geom_type} is not a polygon"
    minx, miny, maxx, maxy = geometry.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        return f"bounds {geometry.bounds} are outside longitude/latitude"
    width, height = _span(geometry)
    if max(width, height) > MAX_MINE_DEGREES:
        return f"spans {width:.2f} x {height:.2f} degrees (more than {MAX_MINE_DEGREES}: no mine is that large)"
    if not isinstance(iso3, str) or iso3 not in ISO3_CODES:
        return f"unknown ISO3 code {iso3!r}"
    return None


def _polygonal(geometry):
    """make_valid can return a collection; keep its polygonal part."""
    if geometry is None or geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry
    parts = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def validate_polygons(frame: gpd.GeoDataFrame, source: str) -> ValidatedPolygons:
    """Valid rows in EPSG:4326 (invalid geometries repaired and counted) and the rejected rows with reasons."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise PolygonFileError(f"{source}: missing columns {missing} (expected {list(COLUMNS)})")
    if frame.crs is None:
        raise PolygonFileError(f"{source}: the file has no CRS; expected a geographic CRS such as EPSG:4326")
    if not frame.crs.is_geographic:
        raise PolygonFileError(f"{source}: CRS {frame.crs.to_string()} is projected; expected a geographic CRS")
    frame = frame.to_crs(4326).reset_index(drop=True)
    frame.insert(0, "mine_id", np.arange(len(frame), dtype="int64"))
    unwrapped = [unwrap_antimeridian(g) for g in frame.geometry.to_numpy()]
    geometries = np.array([g for g, _ in unwrapped], dtype=object)
    invalid = np.array([g is not None and not g.is_empty and not g.is_valid for g in geometries], dtype=bool)
    explained = {i: shapely.is_valid_reason(geometries[i]) for i in np.nonzero(invalid)[0]}
    repaired = geometries.copy()
    repaired[invalid] = [_polygonal(g) for g in shapely.make_valid(geometries[invalid])]
    frame = frame.set_geometry(gpd.GeoSeries(repaired, crs=frame.crs))
    reasons = [_reason(g, iso3) for g, iso3 in zip(frame.geometry, frame["ISO3_CODE"], strict=True)]
    for i, why in explained.items():
        if reasons[i] == "empty geometry":  # make_valid left no polygon
            reasons[i] = f"invalid geometry that cannot be repaired ({why})"
    first: dict[tuple, int] = {}
    for i, (g, iso3) in enumerate(zip(frame.geometry, frame["ISO3_CODE"], strict=True)):
        if reasons[i] is None:
            key = (iso3, shapely.to_wkb(shapely.normalize(g)))
            if key in first:
                reasons[i] = f"duplicate of row {first[key]}"
            else:
                first[key] = i
    frame["reason"] = reasons
    bad = frame["reason"].notna().to_numpy()
    valid = frame[~bad].drop(columns="reason").reset_index(drop=True)
    rejects = frame[bad].reset_index(drop=True)
    rejects["reason"] = rejects["reason"].astype(str)
    rejects["source"] = source
    return ValidatedPolygons(valid=valid, rejects=rejects, made_valid=int((invalid & ~bad).sum()),
                             unwrapped=sum(flag for _, flag in unwrapped))
