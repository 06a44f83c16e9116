"""Mine polygons (Maus et al. style: ``ISO3_CODE``, ``COUNTRY_NAME``, ``AREA``), validated row by row.

Rows that cannot be used are kept, with the reason, in a rejects table instead of
being dropped silently; only a file that is unusable as a whole raises.
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


class PolygonFileError(InputError):
    """The polygon file as a whole cannot be used."""


@dataclass(frozen=True)
class ValidatedPolygons:
    valid: gpd.GeoDataFrame  # with ``mine_id`` = row number in the source file
    rejects: gpd.GeoDataFrame  # the rejected rows with ``mine_id`` and ``reason``
    made_valid: int


def _reason(geometry, iso3) -> str | None:
    if geometry is None or geometry.is_empty:
        return "empty geometry"
    if geometry.geom_type not in ("Polygon", "MultiPolygon"):
        return f"{geometry.geom_type} is not a polygon"
    minx, miny, maxx, maxy = geometry.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        return f"bounds {geometry.bounds} are outside longitude/latitude"
    if not isinstance(iso3, str) or iso3 not in ISO3_CODES:
        return f"unknown ISO3 code {iso3!r}"
    return None


def _polygonal(geometry):
    """make_valid can return a collection; keep its polygonal part."""
    if geometry is None or geometry.geom_type != "GeometryCollection":
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
    geometries = frame.geometry.to_numpy()
    invalid = np.array([g is not None and not g.is_empty and not g.is_valid for g in geometries], dtype=bool)
    repaired = geometries.copy()
    repaired[invalid] = [_polygonal(g) for g in shapely.make_valid(geometries[invalid])]
    frame = frame.set_geometry(gpd.GeoSeries(repaired, crs=frame.crs))
    reasons = [_reason(g, iso3) for g, iso3 in zip(frame.geometry, frame["ISO3_CODE"], strict=True)]
    frame["reason"] = reasons
    bad = frame["reason"].notna().to_numpy()
    valid = frame[~bad].drop(columns="reason").reset_index(drop=True)
    rejects = frame[bad].reset_index(drop=True)
    rejects["reason"] = rejects["reason"].astype(str)
    return ValidatedPolygons(valid=valid, rejects=rejects, made_valid=int((invalid & ~bad).sum()))
