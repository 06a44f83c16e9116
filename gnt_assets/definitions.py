"""The gnt_assets code location: five pipeline groups, shared sensors, resources by GNT_PROFILE."""

import os
from pathlib import Path

import dagster as dg

from gnt_assets.conus404 import definitions as conus404
from gnt_assets.jobs import reference_data_on_dask
from gnt_assets.mapterhorn import definitions as mapterhorn
from gnt_assets.mining import definitions as mining
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions as rasters
from gnt_assets.run_monitoring import DEFAULT_EXECUTOR
from gnt_assets.sensors.automation import automation_sensor
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets.sentinel import definitions as sentinel


def with_source_links(assets: list) -> list:
    """Each asset links to the file and line that defines it; with ``GNT_GIT_URL`` (and ``GNT_GIT_BRANCH``,
    default main) set, to that file in the repository's web view instead of the local path."""
    linked = dg.with_source_code_references(assets)
    if not os.environ.get("GNT_GIT_URL"):
        return list(linked)
    mapping = dg.AnchorBasedFilePathMapping(local_file_anchor=Path(__file__), file_anchor_path_in_repository="gnt_assets/definitions.py")
    return list(dg.link_code_references_to_git(linked, git_url=os.environ["GNT_GIT_URL"],
                                               git_branch=os.environ.get("GNT_GIT_BRANCH", "main"), file_path_mapping=mapping))


def code_location() -> dg.Definitions:
    """The five pipelines, the shared sensors and the profile's resources, as one Definitions."""
    pipelines = dg.Definitions.merge(mining.defs, conus404.defs, rasters.defs, sentinel.defs, mapterhorn.defs)
    return dg.Definitions(
        assets=with_source_links(list(pipelines.assets or [])),
        asset_checks=pipelines.asset_checks,
        sensors=[check_failure_alert_sensor, automation_sensor, *(pipelines.sensors or [])],
        schedules=pipelines.schedules,
        jobs=[reference_data_on_dask, *(pipelines.jobs or [])],
        resources=resources_for_profile(),
        executor=DEFAULT_EXECUTOR,
    )


# Dagster loads exactly one Definitions object from this module (a second at module scope is refused).
defs = code_location()
