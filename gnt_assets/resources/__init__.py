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


def selected_profile(profile: str | None = None) -> str:
    """The profile asked for (default ``GNT_PROFILE``, else local), refused unless it is known and complete."""
    profile = profile or os.environ.get("GNT_PROFILE", "local")
    if profile not in PROFILES:
        raise ProfileError(f"GNT_PROFILE={profile!r} is not a profile; use one of {', '.join(PROFILES)}")
    if profile == "cloud" and not os.environ.get("GNT_STORAGE_ROOT"):
        raise ProfileError("GNT_PROFILE=cloud needs GNT_STORAGE_ROOT (an fsspec URL such as s3://bucket/gnt)")
    return profile
