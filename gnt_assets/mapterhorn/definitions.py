"""The mapterhorn pipeline's assets, checks, sensors and jobs, and its resources for a profile."""

import os
from typing import Any

import dagster as dg

from gnt_assets.mapterhorn import assets
from gnt_assets.mapterhorn.local import LocalMapterhornSourcesResource
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mapterhorn.sensors import (
    mapterhorn_file_job,
    mapterhorn_file_list_sensor,
    mapterhorn_source_job,
    mapterhorn_source_merge_sensor,
)
from gnt_assets.vocabulary import describe

KINDS = {
    "mapterhorn_cog": {"python", "geotiff"},
    "mapterhorn_bounds_csv": {"python", "csv"},
    "mapterhorn_source_coverage": {"python", "geopackage"},
    "mapterhorn_tarball": {"python", "tar"},
    "mapterhorn_file_status": {"python", "parquet"},
    "mapterhorn_report": {"python", "json"},
}

defs = dg.Definitions(
    assets=describe([
        assets.mapterhorn_cog,
        assets.mapterhorn_bounds_csv,
        assets.mapterhorn_source_coverage,
        assets.mapterhorn_tarball,
        assets.mapterhorn_file_status,
        assets.mapterhorn_report,
    ], owner="team:mapterhorn", kinds=KINDS),
    sensors=[mapterhorn_file_list_sensor, mapterhorn_source_merge_sensor],
    jobs=[mapterhorn_file_job, mapterhorn_source_job],
)


def resource_set(profile: str) -> dict[str, Any]:
    if profile == "local":
        work = os.path.join(os.environ.get("GNT_STORAGE_ROOT", "./data"), "mapterhorn")
        return {"mapterhorn_sources": LocalMapterhornSourcesResource(work_dir=work)}
    return {
        "mapterhorn_sources": MapterhornSourcesResource(
            work_dir=os.environ.get("GNT_MAPTERHORN_WORK_DIR", "/tmp/gnt-mapterhorn"),
            catalog_dir=dg.EnvVar("GNT_MAPTERHORN_CATALOG"),
        )
    }
