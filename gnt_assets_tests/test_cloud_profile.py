"""The cloud profile is checked at load: every missing variable named at once; complete, it wires real clients."""

from __future__ import annotations

import dagster as dg
import pytest

from gnt_assets.conus404 import definitions as conus404
from gnt_assets.conus404.resources import PlanetaryComputerConus404Source
from gnt_assets.mapterhorn import definitions as mapterhorn
from gnt_assets.mapterhorn.resources import MapterhornSourcesResource
from gnt_assets.mining import definitions as mining
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.resources import GoogleDrive, GoogleEarthEngine
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters import definitions as rasters
from gnt_assets.resources import CLOUD_REQUIRED, ProfileError
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets.sentinel import definitions as sentinel
from gnt_assets.sentinel.resources import EarthSearchStac, PlanetaryComputerStac

FAKE_CLOUD = {
    "GNT_STORAGE_ROOT": "s3://gnt-test-bucket/gnt",
    "GNT_GEE_PROJECT": "gnt-test-project",
    "GNT_GEE_SERVICE_ACCOUNT_KEY": '{"type": "service_account", "client_email": "gnt@example.iam.gserviceaccount.com"}',
    "GNT_HPC_TARGET_URL": "sftp://hpc.example.org/scratch/gnt",
    "GNT_MAPTERHORN_CATALOG": "s3://gnt-test-bucket/mapterhorn-catalog",
    "GNT_ALERT_WEBHOOK_URL": "https://hooks.slack.com/services/T000/B000/XXXX",
    "GNT_SENTINEL_STAC": "planetary-computer",
}


@pytest.fixture
def cloud_env(monkeypatch):
    for name in [*CLOUD_REQUIRED, "GNT_ALERT_WEBHOOK_URL", "GNT_SENTINEL_STAC", "GNT_DASK_SCHEDULER"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GNT_PROFILE", "cloud")
    return monkeypatch


def test_cloud_profile_names_every_missing_variable_at_once(cloud_env):
    cloud_env.setenv("GNT_STORAGE_ROOT", "s3://bucket/gnt")
    cloud_env.setenv("GNT_ALERT_WEBHOOK_URL", "http://hooks.example.com/x")
    with pytest.raises(ProfileError) as refused:
        resources_for_profile("cloud")
    message = str(refused.value)
    for name in ("GNT_GEE_PROJECT", "GNT_GEE_SERVICE_ACCOUNT_KEY", "GNT_HPC_TARGET_URL", "GNT_MAPTERHORN_CATALOG"):
        assert f"{name} is not set" in message
    assert "GNT_STORAGE_ROOT is not set" not in message and "GNT_ALERT_WEBHOOK_URL='http://hooks.example.com/x'" in message


def test_complete_cloud_profile_loads_with_the_real_clients(cloud_env):
    for name, value in FAKE_CLOUD.items():
        cloud_env.setenv(name, value)
    resources = resources_for_profile("cloud")
    assert isinstance(resources["earthengine"], GoogleEarthEngine) and isinstance(resources["drive"], GoogleDrive)
    assert isinstance(resources["hpc"], HPCTargetResource)
    assert isinstance(resources["conus404_source"], PlanetaryComputerConus404Source)
    assert isinstance(resources["sentinel_stac"], PlanetaryComputerStac) and not isinstance(resources["sentinel_stac"], EarthSearchStac)
    assert isinstance(resources["mapterhorn_sources"], MapterhornSourcesResource)
    assert resources["compute"].coiled_cluster == {"name": "gnt-assets"}
    with dg.build_resources({"alerts": resources["alerts"]}) as built:  # EnvVars resolved as in a run
        assert [sink.name for sink in built.alerts.sinks()] == ["log", "webhook"]
    # the whole code location resolves on these resources (every asset's required resource is there)
    defs = dg.Definitions.merge(
        dg.Definitions(sensors=[check_failure_alert_sensor], resources=resources),
        mining.defs, conus404.defs, rasters.defs, sentinel.defs, mapterhorn.defs,
    )
    repository = defs.get_repository_def()
    assert len(list(repository.asset_graph.materializable_asset_keys)) > 20
