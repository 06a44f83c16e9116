"""Partition keys built from user-supplied names (file names, grid cell ids, URLs).

Dagster forbids ``| , [ ]`` in static and multi-partition keys, and a key also
becomes a path segment under the storage root, so ``/`` and ``..`` must never
survive. Keys are made readable, not hashed, so users recognise them in the UI.
"""

from __future__ import annotations

import re

from gnt_assets.core.errors import InputError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")
_DOTS = re.compile(r"\.{2,}")
MAX_KEY_LENGTH = 200


class PartitionKeyError(InputError):
    """A partition key that would be unsafe as a Dagster key or a path segment."""


def sanitize_key(name: str) -> str:
    """Turn any name into a key of ``[A-Za-z0-9_.-]`` with no ``..`` and no leading dot."""
    key = _DOTS.sub(".", _UNSAFE.sub("_", name.strip())).strip("._-")
    if not key:
        raise PartitionKeyError(f"name {name!r} leaves nothing usable as a partition key")
    return key[:MAX_KEY_LENGTH]


def check_key(key: str, *, what: str = "partition key") -> str:
    """Reject a key that could escape its folder or break Dagster's multi-partition syntax."""
    problems = []
    if not key:
        problems.append("is empty")
    if ".." in key:
        problems.append("contains '..'")
    for char in "/\\|,[]":
        if char in key:
            problems.append(f"contains {char!r}")
    if problems:
        raise PartitionKeyError(
            f"{what} {key!r} {' and '.join(problems)}; use gnt_assets.core.keys.sanitize_key to derive a safe key"
        )
    return key


def unique_keys(names: list[str]) -> list[str]:
    """Sanitised keys, with ``-2``, ``-3`` ... appended where two names collapse to one key."""
    seen: dict[str, int] = {}
    keys = []
    for name in names:
        base = sanitize_key(name)
        count = seen.get(base, 0) + 1
        seen[base] = count
        keys.append(base if count == 1 else f"{base}-{count}")
    return keys
