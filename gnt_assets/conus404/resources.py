"""The CONUS404 hourly source: one interface, the Planetary Computer store or a generated local one."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg
import xarray as xr
from pydantic import Field, field_validator

from gnt_assets.conus404.validation import DEWPOINT_TOLERANCE, MAX_BAD_SHARE, Rules
from gnt_assets.conus404.variables import (
    DEFAULT_VARIABLES,
    SourceVariable,
    resolve_variables,
)

PC_STAC_URL = "https://planetarycomputer.microsoft.com/api/stac/v1"


class Conus404Source(dg.ConfigurableResource):
    """Opens the hourly store lazily and without dask (``chunks=None``): the daily asset reads one
    variable and one day at a time, straight through zarr (dask's per-chunk tasks cost ~20 % at full size)."""

    variables: list[str] = Field(default=list(DEFAULT_VARIABLES), description="Source variables to aggregate.")
    accumulation_offset: int = Field(
        default=1,
        description="Hours after midnight where accumulation windows start: 1 = USGS HyTEST "
        "(01:00 D .. 00:00 D+1), 0 = the seed's 00:00 .. 23:00.",
    )

    @field_validator("variables")
    @classmethod
    def _known_variables(cls, names: list[str]) -> list[str]:
        resolve_variables(names)  # an unknown name fails when the definitions load, naming it
        return names

    @field_validator("accumulation_offset")
    @classmethod
    def _offset(cls, offset: int) -> int:
        if offset not in (0, 1):
            raise ValueError(f"conus404 accumulation_offset must be 0 (seed) or 1 (HyTEST), got {offset}")
        return offset

    def open_hourly(self) -> xr.Dataset:
        raise NotImplementedError

    def window_hint(self) -> str:
        """Appended to a day-outside-the-window error: how this source's window could be extended."""
        return ""

    def read_attempt(self, day: date) -> None:
        """Hook before a day is read; only the local source uses it (to simulate timeouts)."""

    def source_variables(self, hourly: xr.Dataset) -> list[SourceVariable]:
        return resolve_variables(self.variables, available=set(hourly.data_vars))

    def complete_days(self, hourly: xr.Dataset) -> tuple[date, date]:
        """First and last day whose whole window (00:00 D .. 00:00 D+1, plus 23:00 D-1 for offset 0) exists."""
        times = hourly.indexes["time"]
        first = times[0].date() + timedelta(days=0 if self.accumulation_offset else 1)
        last = (times[-1] - timedelta(hours=24 if self.accumulation_offset else 23)).date()
        return first, last


class PlanetaryComputerConus404Source(Conus404Source):
    """Planetary Computer collection ``conus404``, asset ``zarr-abfs``, signed with a SAS token."""

    stac_url: str = Field(default=PC_STAC_URL, description="STAC API root.")
    collection: str = "conus404"
    asset: str = "zarr-abfs"
    sas_url: str | None = Field(default=None, description="SAS token endpoint (PC_SDK_SAS_URL); default the PC one.")
    subscription_key: str | None = Field(default=None, description="PC subscription key; use EnvVar.")
    timeout_seconds: float = Field(default=60.0, description="STAC request timeout; a timeout is retried.")
    request_retries: int = Field(default=5, description="Immediate HTTP retries inside pystac-client, before the asset's retry policy.")

    def open_hourly(self) -> xr.Dataset:
        import planetary_computer
        import pystac_client
        from planetary_computer.settings import Settings
        from pystac_client.stac_api_io import StacApiIO

        stac_io = StacApiIO(timeout=self.timeout_seconds, max_retries=self.request_retries or None)
        catalog = pystac_client.Client.open(self.stac_url, stac_io=stac_io, timeout=self.timeout_seconds)
        collection = catalog.get_collection(self.collection)
        if self.asset not in collection.assets:
            raise KeyError(f"STAC collection {self.collection!r} at {self.stac_url} has no asset {self.asset!r}")
        # planetary_computer keeps its settings process-wide: set ours only while signing, so another
        # resource in the same process (the Sentinel-2 signer) still gets the default token endpoint.
        settings = Settings.get()
        saved = settings.sas_url, settings.subscription_key
        try:
            settings.sas_url = self.sas_url or settings.sas_url
            settings.subscription_key = self.subscription_key or settings.subscription_key
            asset = planetary_computer.sign(collection.assets[self.asset])
        finally:
            settings.sas_url, settings.subscription_key = saved
        options = dict(asset.extra_fields.get("xarray:storage_options", {}))
        if options.get("connection_string") and options.get("credential"):
            # adlfs ignores `credential` once a connection string is given (the public PC asset has none;
            # emulators and private endpoints do), so the SAS token travels inside the connection string.
            options["connection_string"] = f"{options['connection_string'].rstrip(';')};SharedAccessSignature={options.pop('credential')}"
        open_kwargs = {**asset.extra_fields.get("xarray:open_kwargs", {}), "chunks": None}
        return xr.open_zarr(asset.href, storage_options=options, **open_kwargs)


class Conus404Rules(dg.ConfigurableResource):
    """How strict the conus404_daily checks are (shared by the check step and a failed ranged run)."""

    max_bad_share: float = Field(default=MAX_BAD_SHARE, description="A cell rule fails a day above this share of offending cells.")
    dewpoint_tolerance: float = Field(default=DEWPOINT_TOLERANCE, description="K by which daily mean TD2 may exceed T2 (seed: 1).")

    def rules(self) -> Rules:
        return Rules(max_bad_share=self.max_bad_share, dewpoint_tolerance=self.dewpoint_tolerance)
