"""The demo's closing table counts what the runs really recorded: partitions, files, bytes, check outcomes."""

from __future__ import annotations

import dagster as dg

from gnt_assets.demo import format_summary, summarize
from gnt_assets.profiles import resources_for_profile

DAYS = ["2020-07-05", "2020-07-06"]  # inside the local CONUS404 source window


def test_summary_counts_partitions_files_bytes_and_checks(storage_root, instance):
    from gnt_assets.definitions import defs

    resources = resources_for_profile("local")  # built after storage_root set GNT_STORAGE_ROOT
    expected_files = expected_bytes = passed = warned = failed = 0
    for day in DAYS:
        result = dg.materialize(
            assets=[*defs.assets, *(defs.asset_checks or [])],
            selection=dg.AssetSelection.assets("conus404_daily"),
            partition_key=day,
            instance=instance,
            resources=resources,
        )
        assert result.success
        (materialization,) = result.asset_materializations_for_node("conus404_daily")
        expected_files += materialization.metadata["files"].value
        expected_bytes += materialization.metadata["bytes"].value
        evaluations = result.get_asset_check_evaluations()
        assert evaluations, "conus404_daily's checks did not run"
        passed += sum(e.passed for e in evaluations)
        warned += sum(not e.passed and e.severity == dg.AssetCheckSeverity.WARN for e in evaluations)
        failed += sum(not e.passed and e.severity == dg.AssetCheckSeverity.ERROR for e in evaluations)

    rows = {row.asset: row for row in summarize(instance)}
    row = rows["conus404_daily"]
    assert row.partitions == len(DAYS)
    assert row.files == expected_files > 0
    assert row.bytes == expected_bytes > 0
    assert (row.checks_passed, row.checks_warned, row.checks_failed) == (passed, warned, failed)
    assert passed > 0
    assert "conus404_analysis_ready" not in rows  # never materialized, never checked: not listed

    # Re-running a partition replaces its row's numbers instead of adding a third partition.
    dg.materialize(
        assets=[*defs.assets, *(defs.asset_checks or [])],
        selection=dg.AssetSelection.assets("conus404_daily"),
        partition_key=DAYS[0],
        instance=instance,
        resources=resources,
    )
    assert {row.asset: row for row in summarize(instance)}["conus404_daily"].partitions == len(DAYS)

    table = format_summary(summarize(instance)).splitlines()
    assert table[0].split() == ["asset", "partitions", "files", "bytes", "checks", "passed", "warnings", "errors"]
    assert set(table[1]) <= {"-", " "}
    line = next(line for line in table if line.startswith("conus404_daily "))
    assert line.split()[1:3] == [str(len(DAYS)), str(row.files)] and f"{row.bytes:,}" in line
