"""Resource sets by profile (DESIGN section 2): ``GNT_PROFILE=local`` (default) or ``cloud``.

Both sets implement the same interfaces, so assets never branch on the profile.
Each pipeline contributes its external services from ``resources/<pipeline>.py``.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import dagster as dg

from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.resources.compute import DaskComputeResource
from gnt_assets.resources.storage import StorageResource

PROFILES = ("local", "cloud")
PIPELINES = ("mining", "conus404", "rasters", "sentinel", "mapterhorn")


class ProfileError(RuntimeError):
    pass


def _optional_env(name: str) -> Any:
    """An EnvVar when the variable is set, else None, so optional settings stay optional."""
    return dg.EnvVar(name) if os.environ.get(name) else None


def shared_resources(profile: str) -> dict[str, Any]:
    # Imported here: io_managers.geoparquet imports resources.storage, so a module-level
    # import made `import gnt_assets.io_managers.geoparquet` (imported first) circular.
    from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
    from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
    from gnt_assets.io_managers.tar import TarIOManager
    from gnt_assets.io_managers.zarr import ZarrRegionIOManager

    alerts = AlertSinksResource(webhook_url=_optional_env("GNT_ALERT_WEBHOOK_URL"))
    if profile == "local":
        storage = StorageResource(
            root=os.environ.get("GNT_STORAGE_ROOT", "./data"),
            endpoint_url=os.environ.get("GNT_S3_ENDPOINT_URL"),
        )
        compute = DaskComputeResource(scheduler_address=os.environ.get("GNT_DASK_SCHEDULER") or None)
    else:
        storage = StorageResource(
            root=dg.EnvVar("GNT_STORAGE_ROOT"),
            endpoint_url=_optional_env("GNT_S3_ENDPOINT_URL"),
        )
        compute = DaskComputeResource(
            scheduler_address=os.environ.get("GNT_DASK_SCHEDULER") or None,
            coiled_cluster=None if os.environ.get("GNT_DASK_SCHEDULER") else {"name": os.environ.get("GNT_COILED_CLUSTER", "gnt-assets")},
            coiled_token=_optional_env("DASK_COILED__TOKEN"),
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
    profile = profile or os.environ.get("GNT_PROFILE", "local")
    if profile not in PROFILES:
        raise ProfileError(f"GNT_PROFILE={profile!r} is not a profile; use one of {', '.join(PROFILES)}")
    if profile == "cloud" and not os.environ.get("GNT_STORAGE_ROOT"):
        raise ProfileError("GNT_PROFILE=cloud needs GNT_STORAGE_ROOT (an fsspec URL such as s3://bucket/gnt)")
    resources = shared_resources(profile)
    for pipeline in PIPELINES:
        module = importlib.import_module(f"gnt_assets.resources.{pipeline}")
        resources.update(module.resource_set(profile))
    return resources
