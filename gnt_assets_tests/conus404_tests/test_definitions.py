"""The conus404 definitions load and every asset has a group, a description and checks."""

import dagster as dg

from gnt_assets.conus404.assets import SOURCE_RETRY, conus404_daily
from gnt_assets.conus404.definitions import defs, resource_set
from gnt_assets.conus404.local import LocalConus404Source
from gnt_assets.conus404.resources import PlanetaryComputerConus404Source


def test_every_asset_is_grouped_described_and_checked():
    checked = {check.asset_key for checks in defs.asset_checks for check in checks.check_keys}
    for asset in defs.assets:
        for key in asset.keys:
            assert asset.group_names_by_key[key] == "conus404"
            assert asset.descriptions_by_key.get(key)
            assert key in checked, f"{key.to_user_string()} has no asset check"


def test_daily_asset_retries_with_backoff_and_backfills_in_ranges():
    assert conus404_daily.backfill_policy == dg.BackfillPolicy.multi_run(366)
    assert SOURCE_RETRY.backoff == dg.Backoff.EXPONENTIAL and SOURCE_RETRY.jitter == dg.Jitter.PLUS_MINUS
    blocking = {c.name for checks in defs.asset_checks for c in checks.check_specs if c.blocking and c.asset_key == conus404_daily.key}
    assert blocking == {"hours_complete", "no_all_nan_variable", "t2_plausible", "dewpoint_below_temperature",
                        "lower_bounds", "non_negative_totals"}


def test_every_daily_rule_is_one_check_step():
    """One step reads each stored day once and emits every rule's result (not one read per check)."""
    daily_steps = [checks for checks in defs.asset_checks if any(k.asset_key == conus404_daily.key for k in checks.check_keys)]
    assert len(daily_steps) == 1 and len(list(daily_steps[0].check_keys)) == 8


def test_the_local_window_is_in_the_daily_description():
    description = conus404_daily.descriptions_by_key[conus404_daily.key]
    assert "2020-07-01 .. 2020-07-20" in description and "`start`/`days`" in description


def test_profiles_pick_the_local_or_the_planetary_computer_source(monkeypatch, tmp_path):
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(tmp_path))
    assert isinstance(resource_set("local")["conus404_source"], LocalConus404Source)
    assert isinstance(resource_set("cloud")["conus404_source"], PlanetaryComputerConus404Source)
