"""The run tag every mining job carries, and the job that submits a country-year's Earth Engine exports.

deploy/dagster.postgres.yaml limits how many runs with ``RUN_TAGS`` start at once (a tag on a job is set on
each of its runs, sensor and backfill runs included); the ``gee`` pool bounds the export steps themselves.
"""

import dagster as dg

from gnt_assets.mining.assets import landsat_exports

RUN_TAGS = {"gnt/pipeline": "mining"}

mining_exports_job = dg.define_asset_job(
    "mining_exports_job",
    selection=dg.AssetSelection.assets(landsat_exports),
    tags=RUN_TAGS,
    description="Submits a country-year's Landsat exports to Earth Engine (a backfill of it covers many country-years); "
                "the export sensor then starts the region runs.",
)
