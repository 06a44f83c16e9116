"""Pool limits from configuration, applied to the instance at start-up.

Dagster keeps per-pool limits in the instance's database (``dagster instance concurrency set``), not in
dagster.yaml, so a fresh or rebuilt instance would run every pool at ``default_limit``. ``make dev``,
``make demo`` and a deployment's daemon start with ``python -m gnt_assets.pools``, which sets each limit
below (``GNT_POOL_<NAME>=<slots>`` overrides one); the UI shows them under Deployment > Concurrency.
"""

from __future__ import annotations

import os

import dagster as dg

from gnt_assets.core.errors import InputError

# Earth Engine runs about two batch tasks per project at once on average; Planetary Computer throttles readers.
POOL_LIMITS = {"gee": 2, "conus404_source": 4}


def configured_limits(environ: dict[str, str] | None = None) -> dict[str, int]:
    env = os.environ if environ is None else environ
    limits = {}
    for pool, default in POOL_LIMITS.items():
        value = env.get(f"GNT_POOL_{pool.upper()}", str(default))
        if not value.isdigit():
            raise InputError(f"GNT_POOL_{pool.upper()}={value!r} is not a whole number of slots for pool {pool!r}")
        limits[pool] = int(value)
    return limits


def apply_pool_limits(instance: dg.DagsterInstance, limits: dict[str, int] | None = None) -> dict[str, int]:
    """Sets each pool's slot count on ``instance`` (idempotent: running steps keep their slots)."""
    limits = configured_limits() if limits is None else limits
    for pool, slots in limits.items():
        instance.event_log_storage.set_concurrency_slots(pool, slots)
    return limits


if __name__ == "__main__":
    with dg.DagsterInstance.get() as current:
        applied = apply_pool_limits(current)
    print("pool limits: " + ", ".join(f"{pool}={slots}" for pool, slots in applied.items()))
