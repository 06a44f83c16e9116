"""`make demo`: every pipeline materialized end to end on the local backends, then a summary.

Runs against the project's instance (``DAGSTER_HOME``, set by the Makefile to
``.gnt/dagster_home``), so ``make dev`` afterwards shows the demo's
materializations, checks and quick looks in the UI.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

from gnt_assets.profiles import PIPELINES


@dataclass(frozen=True)
class SummaryRow:
    asset: str
    partitions: int
    files: int
    bytes: int
    checks_passed: int
    checks_warned: int  # failed WARN checks: soft findings, the data was written
    checks_failed: int  # failed ERROR checks


def _latest_by_partition(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
    latest: dict[str | None, dg.AssetMaterialization] = {}
    cursor = None
    while True:
        page = instance.fetch_materializations(key, limit=1000, cursor=cursor, ascending=True)
        for record in page.records:
            materialization = record.asset_materialization
            if materialization is not None:
                latest[materialization.partition] = materialization
        if not page.has_more:
            return list(latest.values())
        cursor = page.cursor


def _metadata_int(materialization: dg.AssetMaterialization, name: str) -> int:
    value = materialization.metadata.get(name)
    return int(value.value) if value is not None and value.value is not None else 0


def summarize(instance: dg.DagsterInstance) -> list[SummaryRow]:
    from gnt_assets.definitions import defs

    repository = defs.get_repository_def()
    check_results: dict[dg.AssetKey, list[str]] = {}
    for check_key in repository.asset_graph.asset_check_keys:
        records = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100_000)
        for record in records:
            evaluation = record.event.dagster_event.event_specific_data if record.event else None
            if isinstance(evaluation, dg.AssetCheckEvaluation):  # not a check planned in a run whose step failed
                outcome = "passed" if evaluation.passed else evaluation.severity.value.lower()
                check_results.setdefault(check_key.asset_key, []).append(outcome)
    rows = []
    for key in sorted(repository.asset_graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        materializations = _latest_by_partition(instance, key)
        if not materializations and key not in check_results:
            continue
        outcomes = check_results.get(key, [])
        rows.append(
            SummaryRow(
                asset=key.to_user_string(),
                partitions=len(materializations),
                files=sum(_metadata_int(m, "files") for m in materializations),
                bytes=sum(_metadata_int(m, "bytes") for m in materializations),
                checks_passed=outcomes.count("passed"),
                checks_warned=outcomes.count("warn"),
                checks_failed=outcomes.count("error"),
            )
        )
    return rows


def format_summary(rows: list[SummaryRow]) -> str:
    header = ("asset", "partitions", "files", "bytes", "checks passed", "warnings", "errors")
    table = [header] + [
        (r.asset, str(r.partitions), str(r.files), f"{r.bytes:,}", str(r.checks_passed), str(r.checks_warned), str(r.checks_failed))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _quiet_dagster_warnings() -> None:
    """The demo prints its own progress; Dagster's beta/preview notices and the one-partition demo jobs'
    backfill-policy notice would bury it (they say nothing about our data)."""
    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    warnings.filterwarnings("ignore", message=r"Asset job \w+ materializes assets with varying BackfillPolicies")


def main(pipelines: Sequence[str] = PIPELINES) -> int:
    _quiet_dagster_warnings()
    from gnt_assets.definitions import defs
    from gnt_assets.pools import apply_pool_limits

    instance = dg.DagsterInstance.get()
    limits = ", ".join(f"{pool}={slots}" for pool, slots in apply_pool_limits(instance).items())
    print(f"demo instance: {os.environ.get('DAGSTER_HOME')}  storage root: {os.environ.get('GNT_STORAGE_ROOT', './data')}  pools: {limits}")
    for pipeline in pipelines:
        started = time.perf_counter()
        print(f"== {pipeline}", flush=True)
        importlib.import_module(f"gnt_assets.{pipeline}.demo").run(instance, defs)
        print(f"   {pipeline} done in {time.perf_counter() - started:.1f} s", flush=True)
    print()
    print(format_summary(summarize(instance)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or PIPELINES))
