"""The mining pipeline's assets, checks, sensors and schedules, and its resources for a profile."""

import os
from typing import Any

import dagster as dg

from gnt_assets.mining import (
    assets,
    checks,
    janitor_checks,
    schedules,
    sensors,
    training_assets,
)
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.jobs import mining_exports_job
from gnt_assets.mining.local.drive import LocalDrive
from gnt_assets.mining.local.earthengine import LocalEarthEngine
from gnt_assets.mining.resources import GoogleDrive, GoogleEarthEngine
from gnt_assets.vocabulary import FOLLOWS_ANY_PARTITION, describe

KINDS = {
    "mine_polygons": {"python", "geopandas", "parquet"},
    "mining_clusters": {"python", "geopandas", "parquet"},
    "landsat_exports": {"python", "earthengine"},
    "landsat_regions": {"python", "googledrive", "zarr"},
    "mining_export_status": {"python", "csv"},
    "mining_training_tiles": {"python", "pytorch"},
    "mining_hpc_transfer": {"python", "hpc"},
}

defs = dg.Definitions(
    assets=describe(
        [
            assets.mine_polygons,
            assets.mining_clusters,
            assets.landsat_exports,
            assets.landsat_regions,
            assets.mining_export_status,
            training_assets.mining_training_tiles,
            training_assets.mining_hpc_transfer,
        ],
        owner="team:mining",
        kinds=KINDS,
        # The status table is refreshed after exports are submitted or regions downloaded (once the runs are over).
        automation={"mining_export_status": FOLLOWS_ANY_PARTITION},
    ),
    asset_checks=[
        *checks.checks,
        janitor_checks.training_tiles_match_clusters,
        janitor_checks.training_tiles_have_data_and_labels,
        janitor_checks.hpc_copy_matches_source,
    ],
    sensors=[
        sensors.gee_export_sensor,
        janitor_checks.janitor_repair_sensor,
    ],
    schedules=[schedules.janitor_daily],
    jobs=[mining_exports_job, janitor_checks.janitor, janitor_checks.mining_repair_job, sensors.mining_region_job],
)


def mining_service_resources(profile: str) -> dict[str, Any]:
    if profile == "local":
        root = os.environ.get("GNT_STORAGE_ROOT", "./data")
        return {"earthengine": LocalEarthEngine(root=root), "drive": LocalDrive(root=root)}
    if os.environ.get("GNT_GOOGLE_REFRESH_TOKEN"):  # the seed's OAuth login, renewed from its refresh token
        auth = {name: dg.EnvVar(f"GNT_GOOGLE_{name.upper()}") for name in ("client_id", "client_secret", "refresh_token")}
    else:
        auth = {"service_account_key": dg.EnvVar("GNT_GEE_SERVICE_ACCOUNT_KEY")}
    return {
        "earthengine": GoogleEarthEngine(project=dg.EnvVar("GNT_GEE_PROJECT"), **auth),
        "drive": GoogleDrive(shared_drive_id=os.environ.get("GNT_DRIVE_SHARED_DRIVE_ID") or None, **auth),
    }


def resource_set(profile: str) -> dict[str, Any]:
    return {
        **mining_service_resources(profile),  # Mining I: Earth Engine and Drive
        **hpc_resources(profile),  # Mining II: the HPC transfer target
    }


def hpc_resources(profile: str) -> dict[str, Any]:
    """The ``hpc`` transfer target for a profile."""
    if profile == "local":
        root = os.environ.get("GNT_STORAGE_ROOT", "./data").rstrip("/")
        return {"hpc": HPCTargetResource(url=os.environ.get("GNT_HPC_TARGET_URL") or f"{root}/hpc_target")}
    secrets = (("password", "GNT_HPC_PASSWORD"), ("private_key", "GNT_HPC_SSH_KEY"), ("key", "GNT_HPC_S3_KEY"), ("secret", "GNT_HPC_S3_SECRET"))
    optional = {name: dg.EnvVar(env) for name, env in secrets if os.environ.get(env)}
    return {
        "hpc": HPCTargetResource(
            url=dg.EnvVar("GNT_HPC_TARGET_URL"), endpoint_url=os.environ.get("GNT_HPC_S3_ENDPOINT_URL"), **optional
        )
    }
