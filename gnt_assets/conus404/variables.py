"""CONUS404 source variables and how each becomes a daily value.

Kinds follow the USGS HyTEST daily product:
* ``instant``: a state at the hour -> mean over 00:00..23:00 of the day;
* ``hourly_accumulation``: accumulated over the previous 60 minutes (ACRAINLSM,
  PREC_ACC_NC) -> sum over 01:00 of day D .. 00:00 of day D+1, so every value
  counts rain that fell during day D (the seed summed 00:00..23:00, which is one
  hour off: its first value is rain of the previous day's last hour);
* ``bucket_accumulation``: accumulated since the simulation start (ACSWDNB) ->
  last minus first of the same 01:00..00:00 window plus the step before it,
  i.e. what accumulated during day D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gnt_assets.core.errors import InputError

Kind = Literal["instant", "hourly_accumulation", "bucket_accumulation"]


@dataclass(frozen=True)
class SourceVariable:
    name: str
    units: str
    description: str
    kind: Kind
    lower_bound: float | None = None  # physically impossible below this (QC)


CATALOG: dict[str, SourceVariable] = {
    v.name: v
    for v in (
        SourceVariable("T2", "K", "TEMP at 2 M", "instant"),
        SourceVariable("TD2", "K", "DEWPOINT TEMP at 2 M", "instant"),
        SourceVariable("Q2", "kg kg-1", "QV at 2 M", "instant", 0.0),
        SourceVariable("PSFC", "Pa", "SFC PRESSURE", "instant", 0.0),
        SourceVariable("U10", "m s-1", "U at 10 M", "instant"),
        SourceVariable("V10", "m s-1", "V at 10 M", "instant"),
        # The seed's Z (mean, like the other states); a 3-D source field is read at its lowest level.
        SourceVariable("Z", "m", "HEIGHT ABOVE SEA LEVEL (lowest model level)", "instant"),
        SourceVariable("LAI", "m-2/m-2", "LEAF AREA INDEX", "instant", 0.0),
        SourceVariable("SWDOWN", "W m-2", "DOWNWARD SHORT WAVE FLUX AT GROUND SURFACE", "instant", 0.0),
        SourceVariable("ACRAINLSM", "mm", "ACCUMULATED RAINFALL FOR LSM (previous 60 min)", "hourly_accumulation", 0.0),
        SourceVariable("PREC_ACC_NC", "mm", "ACCUMULATED GRID SCALE PRECIPITATION (previous 60 min)", "hourly_accumulation", 0.0),
        SourceVariable("ACSWDNB", "J m-2", "ACCUMULATED DOWNWELLING SHORTWAVE FLUX AT BOTTOM", "bucket_accumulation", 0.0),
    )
}

DEFAULT_VARIABLES: tuple[str, ...] = tuple(CATALOG)

# Derived from U10 and V10 when both are configured.
WIND_SPEED = "WIND10"


class VariableConfigError(InputError):
    pass


def resolve_variables(names: list[str] | tuple[str, ...], available: set[str] | None = None) -> list[SourceVariable]:
    """The catalog entries for ``names``; an unknown name (or one the source lacks) is a config error."""
    unknown = [n for n in names if n not in CATALOG]
    if unknown:
        raise VariableConfigError(
            f"conus404 variables {unknown} are not CONUS404 variables this pipeline aggregates; "
            f"known: {', '.join(CATALOG)}"
        )
    if available is not None:
        missing = [n for n in names if n not in available]
        if missing:
            raise VariableConfigError(f"conus404 variables {missing} do not exist in the source store")
    return [CATALOG[n] for n in names]
