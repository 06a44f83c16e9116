"""The whole resource set of a profile: the shared resources plus each pipeline's own services."""

from __future__ import annotations

import importlib
import os
from typing import Any

import dagster as dg

from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
from gnt_assets.io_managers.tar import TarIOManager
from gnt_assets.io_managers.zarr import ZarrRegionIOManager
from gnt_assets.resources import optional_env, selected_profile
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource

PIPELINES = ("mining", "conus404", "rasters", "sentinel", "mapterhorn")


def shared_resources(profile: str) -> dict[str, Any]:
    alerts = AlertSinksResource(webhook_url=optional_env("GNT_ALERT_WEBHOOK_URL"))
    if profile == "local":
        storage = StorageResource(
            root=os.environ.get("GNT_STORAGE_ROOT", "./data"),
            endpoint_url=os.environ.get("GNT_S3_ENDPOINT_URL"),
        )
        compute = DaskComputeResource(scheduler_address=os.environ.get("GNT_DASK_SCHEDULER") or None)
    else:
        storage = StorageResource(
            root=dg.EnvVar("GNT_STORAGE_ROOT"),
            endpoint_url=optional_env("GNT_S3_ENDPOINT_URL"),
        )
        compute = DaskComputeResource(
            scheduler_address=os.environ.get("GNT_DASK_SCHEDULER") or None,
            coiled_cluster=None if os.environ.get("GNT_DASK_SCHEDULER") else {"name": os.environ.get("GNT_COILED_CLUSTER", "gnt-assets")},
            coiled_token=optional_env("DASK_COILED__TOKEN"),
        )
    return {
        "storage": storage,
        "compute": compute,
        "alerts": alerts,
        "geoparquet_io_manager": GeoParquetIOManager(storage=storage),
        "mmap_tensor_io_manager": MmapTensorIOManager(storage=storage),
        "zarr_io_manager": ZarrRegionIOManager(storage=storage),
        "tar_io_manager": TarIOManager(storage=storage),
    }


def resources_for_profile(profile: str | None = None) -> dict[str, Any]:
    profile = selected_profile(profile)
    resources = shared_resources(profile)
    for pipeline in PIPELINES:
        resources.update(importlib.import_module(f"gnt_assets.{pipeline}.definitions").resource_set(profile))
    return resources
