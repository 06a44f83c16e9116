"""Resources for conus404 tests: a small local source under the test's storage root."""

from __future__ import annotations

import dagster as dg
from upath import UPath

from gnt_assets.conus404.local import LocalConus404Source
from gnt_assets.conus404.resources import Conus404Rules
from gnt_assets.profiles import shared_resources

WINDOW_START = "2020-07-01"


def local_resources(root: UPath, rules: dict | None = None, **source_options) -> dict:
    options = {"start": WINDOW_START, "days": 4, "shape": [12, 16], **source_options}
    resources = shared_resources("local")
    resources["conus404_source"] = LocalConus404Source(root=str(root / "sources" / "conus404"), **options)
    resources["conus404_rules"] = Conus404Rules(**(rules or {}))
    return resources


def materialize_days(instance, resources, days, selection=("conus404_daily",), raise_on_error=False):
    from gnt_assets.conus404.definitions import defs

    results = {}
    for day in days:
        results[day] = dg.materialize(
            assets=[*defs.assets, *defs.asset_checks],
            selection=list(selection),
            partition_key=day,
            instance=instance,
            resources=resources,
            raise_on_error=raise_on_error,
        )
    return results
