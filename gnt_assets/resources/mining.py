"""External services of the mining pipeline, one interface with a local and a cloud implementation."""

from __future__ import annotations

from typing import Any

from gnt_assets.resources.hpc import hpc_resources


def resource_set(profile: str) -> dict[str, Any]:
    return {
        **hpc_resources(profile),  # Mining II: the HPC transfer target
    }
