"""The mapterhorn pipeline's assets, checks, sensors and jobs."""

import dagster as dg

from gnt_assets.mapterhorn import assets
from gnt_assets.mapterhorn.sensors import mapterhorn_file_job, mapterhorn_file_list_sensor, mapterhorn_source_job, mapterhorn_source_merge_sensor

defs = dg.Definitions(
    assets=[
        assets.mapterhorn_download,
        assets.mapterhorn_unpacked,
        assets.mapterhorn_georeferenced,
        assets.mapterhorn_cog,
        assets.mapterhorn_bounds,
        assets.mapterhorn_coverage,
        assets.mapterhorn_bounds_csv,
        assets.mapterhorn_source_coverage,
        assets.mapterhorn_tarball,
        assets.mapterhorn_report,
    ],
    sensors=[mapterhorn_file_list_sensor, mapterhorn_source_merge_sensor],
    jobs=[mapterhorn_file_job, mapterhorn_source_job],
)
