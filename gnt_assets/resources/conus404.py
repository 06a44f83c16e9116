"""The CONUS404 hourly source: one interface, the Planetary Computer store or a generated local one."""

from __future__ import annotations

import os
from datetime import date, timedelta
from typing import Any

import dagster as dg
import xarray as xr
from pydantic import Field, field_validator
from upath import UPath

from gnt_assets.conus404.variables import DEFAULT_VARIABLES, SourceVariable, resolve_variables

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


class LocalConus404Source(Conus404Source):
    """A generated hourly zarr (real names, units, projection) under ``root``, covering ``days`` from ``start``."""

    root: str = Field(description="Folder for the generated store (below the storage root).")
    start: str = Field(default="2020-07-01", description="First day of the source window.")
    days: int = Field(default=21, description="Days in the source window; a day outside it fails saying so.")
    shape: list[int] = Field(default=[36, 48], description="Grid (y, x) spanning the real 1015 x 1367 domain.")
    faults: dict[str, str] = Field(
        default_factory=dict, description="Day -> missing_hour | nan_field | impossible_temperature (corrupted source days)."
    )
    transient_failures: dict[str, int] = Field(
        default_factory=dict, description="Day -> how many reads time out before one succeeds (exercises the retry policy)."
    )

    def open_hourly(self) -> xr.Dataset:
        from gnt_assets.local.conus404 import ensure_hourly_store

        path = ensure_hourly_store(
            UPath(self.root), date.fromisoformat(self.start), self.days, tuple(self.shape), self.faults
        )
        return xr.open_zarr(path.path if path.protocol in ("", "file", "local") else path.fs.get_mapper(path.path),
                            consolidated=True, chunks=None)

    def read_attempt(self, day: date) -> None:
        """Counts reads of ``day`` and times out the first ``transient_failures[day]`` of them."""
        allowed = self.transient_failures.get(str(day), 0)
        if not allowed:
            return
        marker = UPath(self.root) / ".attempts" / str(day)
        marker.parent.mkdir(parents=True, exist_ok=True)
        attempts = int(marker.read_text()) if marker.exists() else 0
        marker.write_text(str(attempts + 1))
        if attempts < allowed:
            raise TimeoutError(f"conus404 local source: read of {day} timed out (simulated, attempt {attempts + 1})")


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



def resource_set(profile: str) -> dict[str, Any]:
    if profile == "local":
        root = UPath(os.environ.get("GNT_STORAGE_ROOT", "./data"))
        root = root if "://" in str(root) else root.absolute()
        return {"conus404_source": LocalConus404Source(root=str(root / "sources" / "conus404"))}
    return {
        "conus404_source": PlanetaryComputerConus404Source(
            stac_url=os.environ.get("GNT_CONUS404_STAC_URL", PC_STAC_URL),
            subscription_key=dg.EnvVar("PC_SDK_SUBSCRIPTION_KEY") if os.environ.get("PC_SDK_SUBSCRIPTION_KEY") else None,
        )
    }
