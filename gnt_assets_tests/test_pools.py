"""Pool limits come from configuration: every pool an asset declares has one, and start-up applies them."""

import dagster as dg
import pytest

from gnt_assets.core.errors import InputError
from gnt_assets.pools import POOL_LIMITS, apply_pool_limits, configured_limits


def test_every_asset_pool_has_a_configured_limit_and_every_limit_a_pool():
    from gnt_assets.definitions import defs

    used = {pool for node in defs.resolve_asset_graph().asset_nodes for pool in node.pools or ()}
    assert used == set(POOL_LIMITS)


def test_start_up_sets_the_limits_on_the_instance_and_an_override_wins(monkeypatch):
    monkeypatch.setenv("GNT_POOL_GEE", "3")
    with dg.instance_for_test() as instance:
        applied = apply_pool_limits(instance)
        assert applied == {"gee": 3, "conus404_source": POOL_LIMITS["conus404_source"]}
        assert instance.event_log_storage.get_concurrency_info("gee").slot_count == 3
        assert instance.event_log_storage.get_concurrency_info("conus404_source").slot_count == POOL_LIMITS["conus404_source"]
        apply_pool_limits(instance, {"gee": 2})  # again at the next start: idempotent
        assert instance.event_log_storage.get_concurrency_info("gee").slot_count == 2


def test_a_limit_that_is_not_a_number_is_refused_naming_the_variable():
    with pytest.raises(InputError, match="GNT_POOL_GEE='two'"):
        configured_limits({"GNT_POOL_GEE": "two"})
