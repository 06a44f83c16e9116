"""The real source path (pystac-client -> planetary_computer signing -> adlfs -> xr.open_zarr), on loopback.

azurite speaks the Azure blob protocol and checks the SAS token the loopback
token endpoint issues (signed with azurite's development key), so a forged or
refused token fails exactly where it would on the real service.
"""

from __future__ import annotations

from datetime import date

import dagster as dg
import numpy as np
import pytest

from gnt_assets.conus404.aggregation import aggregate_day
from gnt_assets.conus404.daily_store import open_daily
from gnt_assets.conus404.local import (
    StacBehaviour,
    azurite_binary,
    azurite_blob,
    container_sas,
    generate_hourly,
    planetary_computer_api,
    upload_hourly,
)
from gnt_assets.conus404.resources import Conus404Rules, PlanetaryComputerConus404Source
from gnt_assets.conus404.variables import resolve_variables
from gnt_assets.profiles import shared_resources
from gnt_assets_tests.conus404_tests.conus404_fixtures import materialize_days

pytestmark = pytest.mark.skipif(azurite_binary() is None, reason="azurite-blob not installed (run `make node-tools`)")

VARIABLES = ["T2", "TD2", "PREC_ACC_NC"]
DAY = "2020-07-01"


@pytest.fixture(scope="module")
def hourly():
    return generate_hourly(date(2020, 7, 1), 1, (6, 8))[[*VARIABLES, "crs"]]


@pytest.fixture(scope="module")
def azure_store(tmp_path_factory, hourly):
    location = tmp_path_factory.mktemp("azurite")
    with azurite_blob(location) as blob_endpoint:
        href = upload_hourly(blob_endpoint, "noaa", "conus404.zarr", hourly, tmp_path_factory.mktemp("staging"))
        yield href, blob_endpoint


def _resources(storage_root, base: str) -> dict:
    resources = shared_resources("local")
    resources["conus404_source"] = PlanetaryComputerConus404Source(
        stac_url=f"{base}/api/stac/v1", sas_url=f"{base}/api/sas/v1/token", variables=VARIABLES,
        timeout_seconds=1.0, request_retries=0,  # so a stall reaches the asset's retry policy
    )
    resources["conus404_rules"] = Conus404Rules()
    return resources


def _failure_text(result) -> str:
    return " ".join(e.step_failure_data.error.message for e in result.all_events if e.is_step_failure)


def _retries(result) -> int:
    return sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_daily_from_the_signed_azure_store(storage_root, instance, azure_store, hourly):
    from planetary_computer.settings import Settings

    behaviour = StacBehaviour()
    default_sas_url = Settings.get().sas_url
    with planetary_computer_api(*azure_store, behaviour) as base:
        result = materialize_days(instance, _resources(storage_root, base), [DAY])[DAY]
    assert result.success
    assert "/api/sas/v1/token/devstoreaccount1/noaa" in behaviour.requests
    assert Settings.get().sas_url == default_sas_url  # other signers in the process keep the real endpoint
    expected = aggregate_day(hourly, date(2020, 7, 1), resolve_variables(VARIABLES))
    stored = open_daily(storage_root / "conus404" / "daily.zarr")
    np.testing.assert_array_equal(stored["T2"].sel(time=DAY).values, expected.fields["T2"])
    np.testing.assert_array_equal(stored["PREC_ACC_NC"].sel(time=DAY).values, expected.fields["PREC_ACC_NC"])


@pytest.mark.parametrize(
    ("behaviour", "expected"),
    [
        (StacBehaviour(token_status=403), "403"),  # the token endpoint refuses
        (StacBehaviour(token="sv=2021-08-06&se=2030-01-01T00%3A00%3A00Z&sr=c&sp=rl&sig=Zm9yZ2Vk"), "AuthorizationFailure"),
        (StacBehaviour(token=container_sas("noaa", hours=-1)[0]), "failed to authenticate"),  # signed, expired 1 h ago
    ],
    ids=["token-refused", "token-rejected-by-storage", "token-expired"],
)
def test_refused_token_fails_the_day_without_retries(storage_root, instance, azure_store, behaviour, expected):
    with planetary_computer_api(*azure_store, behaviour) as base:
        result = materialize_days(instance, _resources(storage_root, base), [DAY])[DAY]
    assert not result.success
    assert expected in _failure_text(result) and DAY in _failure_text(result)
    assert _retries(result) == 0


def test_a_stalled_stac_api_is_retried(storage_root, instance, azure_store):
    behaviour = StacBehaviour(slow_collection_requests=1, stall_seconds=3.0)
    with planetary_computer_api(*azure_store, behaviour) as base:
        result = materialize_days(instance, _resources(storage_root, base), [DAY])[DAY]
    assert result.success
    assert _retries(result) == 1


def test_a_day_the_store_lacks_fails_naming_the_window(storage_root, instance, azure_store):
    with dg.instance_for_test() as other, planetary_computer_api(*azure_store, StacBehaviour()) as base:
        result = materialize_days(other, _resources(storage_root, base), ["2020-07-03"])["2020-07-03"]
    assert not result.success
    assert "outside the source window" in _failure_text(result) and _retries(result) == 0
