"""Sentinel-2 scene search: one interface (a STAC API + asset names), real Earth Search v1 and
Planetary Computer implementations, and the local one (generated COGs behind ``rustac serve``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from datetime import date
from typing import Literal

import dagster as dg
from pydantic import Field

from gnt_assets.sentinel.stac import SceneQuery

BANDS = ("red", "green", "blue", "nir")


class SentinelStacResource(dg.ConfigurableResource):
    """A STAC API serving Sentinel-2 L2A items; ``band_assets`` maps cube bands to the collection's asset names."""

    url: str = Field(default="https://earth-search.aws.element84.com/v1", description="STAC API root URL.")
    collection: str = "sentinel-2-c1-l2a"
    band_assets: dict[str, str] = Field(default_factory=lambda: {b: b for b in BANDS})
    scl_asset: str = "scl"
    max_cloud: float | None = Field(default=None, description="Keep scenes with eo:cloud_cover below this (percent).")
    page_size: int = 100
    max_pages: int = Field(default=20, description="A search needing more pages fails (a server paging forever).")
    aws_unsigned: bool = Field(default=True, description="Read COGs on S3 without credentials (Earth Search).")

    @contextlib.contextmanager
    def api_url(self) -> Iterator[str]:
        """The URL to search while the block runs (the local implementation starts its server here)."""
        yield self.url

    def modifier(self) -> Callable | None:
        """Applied to every item before reading (Planetary Computer signs hrefs here)."""
        return None

    def query(self, url: str, bbox: tuple[float, float, float, float], month: date) -> SceneQuery:
        return SceneQuery(url=url, collection=self.collection, bbox=bbox, month=month, max_cloud=self.max_cloud,
                          page_size=self.page_size, max_pages=self.max_pages)


class EarthSearchStac(SentinelStacResource):
    """Element 84 Earth Search v1, collection sentinel-2-c1-l2a, unsigned reads from AWS Open Data."""


class PlanetaryComputerStac(SentinelStacResource):
    """Microsoft Planetary Computer, collection sentinel-2-l2a; hrefs signed with planetary_computer.sign_inplace."""

    url: str = "https://planetarycomputer.microsoft.com/api/stac/v1"
    collection: str = "sentinel-2-l2a"
    band_assets: dict[str, str] = Field(default_factory=lambda: {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"})
    scl_asset: str = "SCL"
    aws_unsigned: bool = False

    def modifier(self) -> Callable | None:
        import planetary_computer

        return planetary_computer.sign_inplace


class SentinelCubeResource(dg.ConfigurableResource):
    """How each grid's cube is stored under the storage root: plain zarr (default) or an Icechunk
    repository where every partition's write is one commit (rebased past concurrent partitions)."""

    backend: Literal["zarr", "icechunk"] = Field(default="zarr", description="'zarr' or 'icechunk'.")
    end_month: str = Field(default="2026-12-01", pattern=r"^\d{4}-\d{2}-01$",
                           description="The time axis is created from 2017-01 to this month (YYYY-MM-01) up front.")
    block_months: int = Field(default=12, gt=0, description="A later month grows the axis by whole blocks of this many months.")
