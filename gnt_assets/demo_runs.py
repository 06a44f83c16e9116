"""What the pipelines' demo modules share: quiet run config and materializing a selection per partition.

Each pipeline's ``demo.run(instance, defs)`` gets the merged definitions from ``gnt_assets.demo``,
so no pipeline imports the code location (or another pipeline) to run its part. Every demo run is a run of
a named job, so the Runs list says what each run was: the code location's job when the step is what a sensor
or schedule runs (``mining_region_job``, ``raster_registration_job``, ...), else ``<pipeline>_demo``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import dagster as dg

# The demo prints its own progress; Dagster's per-event console log is there when asked for.
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": os.environ.get("GNT_DEMO_LOG_LEVEL", "WARNING")}}}}


def demo_selection_job(selection: dg.AssetSelection | Sequence[str]) -> dg.AssetSelection:
    if isinstance(selection, dg.AssetSelection):
        return selection
    return dg.AssetSelection.assets(*selection)


def run_job(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job: str,
    selection: dg.AssetSelection | Sequence[str],
    partition_key: str | dg.MultiPartitionKey | None = None,
    *,
    resources: Mapping[str, Any] | None = None,
    run_config: Mapping[str, Any] | None = None,
    raise_on_error: bool = True,
    tags: Mapping[str, str] | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize a selection (with its checks) in process as a run of the job named ``job``: the code location's
    job of that name if it has one (the selection must be part of it), else a job of that name over the selection."""
    target = next((j for j in defs.jobs or [] if j.name == job), None) or dg.define_asset_job(job, selection=demo_selection_job(selection))
    local = dg.Definitions(assets=list(defs.assets or []), asset_checks=list(defs.asset_checks or []), jobs=[target],
                           resources=defs.resources if resources is None else resources)
    keys = demo_selection_job(selection).resolve(local.get_repository_def().asset_graph)
    return local.resolve_job_def(job).execute_in_process(
        run_config=QUIET_RUN_CONFIG if run_config is None else run_config,
        instance=instance,
        partition_key=str(partition_key) if partition_key is not None else None,
        raise_on_error=raise_on_error,
        asset_selection=sorted(keys, key=lambda k: k.to_user_string()),
        tags=tags,  # a partition range (dagster/asset_partition_range_*) runs many partitions in one run
    )


def materialize_partitions(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    selection: dg.AssetSelection | Sequence[str],
    partition_keys: Iterable[str | dg.MultiPartitionKey | None] = (None,),
    *,
    job: str,
) -> list[dg.ExecuteInProcessResult]:
    """Materialize a selection (with its checks) once per partition as runs of ``job``, failing loudly on error."""
    return [run_job(defs, instance, job, selection, key) for key in partition_keys]
