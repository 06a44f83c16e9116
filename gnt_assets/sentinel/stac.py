"""STAC search for one grid cell and month, with a page cap so a server that pages forever fails clearly."""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import pystac
import pystac_client
from pystac_client.conformance import ConformanceClasses

from gnt_assets.core.errors import TransientError


class StacSearchError(TransientError):
    """The API failed to answer (worth retrying)."""


class StacPagingError(StacSearchError):
    """More pages than the cap: a retry would page forever again."""


@dataclass(frozen=True)
class SceneQuery:
    url: str
    collection: str
    bbox: tuple[float, float, float, float]
    month: date
    max_cloud: float | None = None
    page_size: int = 100
    max_pages: int = 20

    @property
    def datetime(self) -> str:
        last = calendar.monthrange(self.month.year, self.month.month)[1]
        return f"{self.month:%Y-%m-01}T00:00:00Z/{self.month:%Y-%m}-{last:02d}T23:59:59Z"


def search_scenes(query: SceneQuery, modifier: Callable | None = None) -> list[pystac.Item]:
    """Items of the month touching the bbox, sorted by time; cloud filter server-side (CQL2) where supported."""
    where = f"STAC API {query.url} collection {query.collection} {query.datetime}"
    try:
        client = pystac_client.Client.open(query.url, modifier=modifier)
        server_filter = query.max_cloud is not None and client.conforms_to(ConformanceClasses.FILTER)
        search = client.search(
            collections=[query.collection], bbox=list(query.bbox), datetime=query.datetime, limit=query.page_size,
            **({"filter": {"op": "<", "args": [{"property": "eo:cloud_cover"}, query.max_cloud]},
                "filter_lang": "cql2-json"} if server_filter else {}),
        )
        items: dict[str, pystac.Item] = {}
        for number, page in enumerate(search.pages(), start=1):
            if number > query.max_pages:
                raise StacPagingError(f"{where}: more than {query.max_pages} pages of {query.page_size}; "
                                      "the server pages forever or the query is far too broad")
            items.update({item.id: item for item in page.items})
    except StacSearchError:
        raise
    except Exception as error:
        raise StacSearchError(f"{where}: search failed ({type(error).__name__}: {error})") from error
    scenes = sorted(items.values(), key=lambda item: (item.datetime, item.id))
    if query.max_cloud is not None:
        scenes = [s for s in scenes if s.properties.get("eo:cloud_cover", 0) < query.max_cloud]
    return scenes
