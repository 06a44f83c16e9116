"""The resources every pipeline shares (storage, compute, alerts, IO managers) and profile selection.

``GNT_PROFILE=local`` (default) or ``cloud`` (DESIGN section 2). Each pipeline's own services
are in ``<pipeline>/resources.py``; ``gnt_assets.profiles`` joins them with these.
"""

from __future__ import annotations

import os
from typing import Any

import dagster as dg

from gnt_assets.core.errors import InputError

PROFILES = ("local", "cloud")


class ProfileError(InputError, RuntimeError):
    pass


def optional_env(name: str) -> Any:
    """An EnvVar when the variable is set, else None, so optional settings stay optional."""
    return dg.EnvVar(name) if os.environ.get(name) else None


# What the cloud profile cannot run without, and what each is for (checked at load, all at once).
CLOUD_REQUIRED = {
    "GNT_STORAGE_ROOT": "the storage root, an fsspec URL such as s3://bucket/gnt",
    "GNT_GEE_PROJECT": "mining: the Earth Engine project",
    "GNT_GEE_SERVICE_ACCOUNT_KEY": "mining: the service-account key (JSON) for Earth Engine and Drive",
    "GNT_HPC_TARGET_URL": "mining: where training tiles are copied (sftp://, s3:// or a folder)",
    "GNT_MAPTERHORN_CATALOG": "mapterhorn: the folder of source lists (file_list.txt per source)",
}
CHOICES = {"GNT_SENTINEL_STAC": ("earth-search", "planetary-computer"), "GNT_SENTINEL_CUBE": ("zarr", "icechunk")}


def profile_problems(profile: str, environ: dict[str, str] | None = None) -> list[str]:
    """Every setting that keeps ``profile`` from running, one line each (empty when it can run)."""
    from gnt_assets.core.alerts import validate_webhook_url

    env = dict(os.environ if environ is None else environ)
    problems = []
    if profile == "cloud":
        problems += [f"{name} is not set ({why})" for name, why in CLOUD_REQUIRED.items() if not env.get(name)]
    for name, allowed in CHOICES.items():
        if env.get(name) and env[name] not in allowed:
            problems.append(f"{name}={env[name]!r} is not one of {', '.join(allowed)}")
    if env.get("GNT_RASTER_TILE_SIZE") and not env["GNT_RASTER_TILE_SIZE"].isdigit():
        problems.append(f"GNT_RASTER_TILE_SIZE={env['GNT_RASTER_TILE_SIZE']!r} is not a whole number of pixels")
    if env.get("GNT_ALERT_WEBHOOK_URL"):
        try:
            validate_webhook_url(env["GNT_ALERT_WEBHOOK_URL"])
        except InputError as error:
            problems.append(str(error))
    return problems


def selected_profile(profile: str | None = None) -> str:
    """The profile asked for (default ``GNT_PROFILE``, else local), refused unless it is known and complete:
    the error names every missing or invalid variable at once."""
    profile = profile or os.environ.get("GNT_PROFILE", "local")
    if profile not in PROFILES:
        raise ProfileError(f"GNT_PROFILE={profile!r} is not a profile; use one of {', '.join(PROFILES)}")
    problems = profile_problems(profile)
    if problems:
        raise ProfileError(f"GNT_PROFILE={profile} cannot load:\n- " + "\n- ".join(problems))
    return profile
