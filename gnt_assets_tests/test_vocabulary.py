"""The automation conditions do what the roll-ups need, and describe() refuses incomplete declarations."""

from __future__ import annotations

import dagster as dg
import pytest

from gnt_assets.vocabulary import FOLLOWS_ANY_PARTITION, FOLLOWS_SAME_PARTITION, VocabularyError, describe

files = dg.DynamicPartitionsDefinition(name="files")
days = dg.DailyPartitionsDefinition(start_date="2020-01-01", end_date="2020-01-10")


@dg.asset(partitions_def=files)
def per_file() -> None: ...


@dg.asset(deps=[per_file], automation_condition=FOLLOWS_ANY_PARTITION)
def roll_up() -> None: ...


@dg.asset(partitions_def=days)
def daily() -> None: ...


@dg.asset(partitions_def=days, deps=[daily], automation_condition=FOLLOWS_SAME_PARTITION)
def daily_summary() -> None: ...


def _requested(instance, assets, cursor=None) -> tuple[dict[str, int], object]:
    result = dg.evaluate_automation_conditions(defs=assets, instance=instance, cursor=cursor)
    counts = {r.key.to_user_string(): r.true_subset.size for r in result.results if r.true_subset.size}
    return counts, result.cursor


def test_a_roll_up_follows_any_upstream_partition_once():
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("files", ["a", "b", "c"])
        assets = [per_file, roll_up]
        requested, cursor = _requested(instance, assets)
        assert requested == {}  # first evaluation: nothing (history is not replayed)
        dg.materialize([per_file], partition_key="a", instance=instance)
        dg.materialize([per_file], partition_key="b", instance=instance)
        requested, cursor = _requested(instance, assets, cursor)
        assert requested == {"roll_up": 1}  # one refresh for two new partitions, though "c" is still missing
        dg.materialize([roll_up], instance=instance)
        requested, cursor = _requested(instance, assets, cursor)
        assert requested == {}


def test_a_summary_follows_its_own_historical_day():
    with dg.instance_for_test() as instance:
        assets = [daily, daily_summary]
        requested, cursor = _requested(instance, assets)
        assert requested == {}
        dg.materialize([daily], partition_key="2020-01-03", instance=instance)  # not the latest day
        requested, cursor = _requested(instance, assets, cursor)
        assert requested == {"daily_summary": 1}
        dg.materialize([daily, daily_summary], partition_key="2020-01-04", instance=instance)  # together: nothing to follow
        dg.materialize([daily_summary], partition_key="2020-01-03", instance=instance)
        requested, cursor = _requested(instance, assets, cursor)
        assert requested == {}


def test_describe_adds_owner_and_kinds_and_refuses_gaps():
    (described,) = describe([per_file], owner="team:test", kinds={"per_file": {"python", "parquet"}})
    spec = next(iter(described.specs))
    assert list(spec.owners) == ["team:test"] and spec.kinds == {"python", "parquet"}
    with pytest.raises(VocabularyError, match="per_file: no kinds declared"):
        describe([per_file], owner="team:test", kinds={})
    with pytest.raises(VocabularyError, match="missing_asset: not an asset of this pipeline"):
        describe([per_file], owner="team:test", kinds={"per_file": {"python"}}, automation={"missing_asset": FOLLOWS_ANY_PARTITION})
