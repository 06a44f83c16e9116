"""What the pipelines' demo modules share: quiet run config and materializing a selection per partition.

Each pipeline's ``demo.run(instance, defs)`` gets the merged definitions from ``gnt_assets.demo``,
so no pipeline imports the code location (or another pipeline) to run its part.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import dagster as dg

# The demo prints its own progress; Dagster's per-event console log is there when asked for.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": os.environ.get("GNT_DEMO_LOG_LEVEL", "WARNING")}}}}


def demo_selection_job(selection: dg.AssetSelection | Sequence[str]) -> dg.AssetSelection:
    if isinstance(selection, dg.AssetSelection):
        return selection
    return dg.AssetSelection.assets(*selection)


def materialize_partitions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: dg.AssetSelection | Sequence[str],
    partition_keys: Iterable[str | dg.MultiPartitionKey | None] = (None,),
) -> list[dg.ExecuteInProcessResult]:
    """Materialize a selection (with its checks) once per partition, failing loudly on error."""
    results = []
    for key in partition_keys:
        result = dg.materialize(
            assets=[*defs.assets, *(defs.asset_checks or [])],
            selection=demo_selection_job(selection),
            partition_key=str(key) if key is not None else None,
            instance=instance,
            resources=defs.resources,
            run_config=QUIET_RUN_CONFIG,
            raise_on_error=True,
        )
        results.append(result)
    return results
