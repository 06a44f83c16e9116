"""External services of the mining pipeline, one interface with a local and a cloud implementation."""

from __future__ import annotations

from typing import Any


def resource_set(profile: str) -> dict[str, Any]:
    return {}
