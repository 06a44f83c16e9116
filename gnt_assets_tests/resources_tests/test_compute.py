"""Dask runs inside assets through the compute resource: LocalCluster, a scheduler address, or Coiled."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from distributed import Client, LocalCluster

from gnt_assets.jobs import REFERENCE_DATA
from gnt_assets.resources.compute import ComputeConfigError, DaskComputeResource


def test_local_cluster_by_default():
    compute = DaskComputeResource(n_workers=1)
    assert compute.mode == "local"
    with compute.get_client() as client:
        assert client.submit(sum, [1, 2, 3]).result() == 6


def test_existing_scheduler_address():
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        compute = DaskComputeResource(scheduler_address=cluster.scheduler_address)
        with compute.get_client() as client:
            assert client.scheduler.address == cluster.scheduler_address
            assert client.submit(pow, 2, 10).result() == 1024


def test_coiled_request_is_built_from_config():
    requests = []

    def fake_coiled_cluster(**kwargs):
        requests.append(kwargs)
        return LocalCluster(n_workers=1, processes=False, dashboard_address=None)

    compute = DaskComputeResource(coiled_cluster={"name": "gnt-sentinel", "n_workers": 8, "region": "us-west-2"})
    assert compute.mode == "coiled"
    with compute.get_client(cluster_factory=fake_coiled_cluster) as client:
        assert isinstance(client, Client)
    assert requests == [
        {"name": "gnt-sentinel", "n_workers": 8, "worker_cpu": 4, "idle_timeout": "5 minutes", "shutdown_on_close": False, "region": "us-west-2"}
    ]


def test_coiled_token_is_set_only_for_the_cluster():
    """dask's config is process-wide: the account token must not outlive the cluster that needed it."""
    import dask

    seen = []

    def fake_coiled_cluster(**kwargs):
        seen.append(dask.config.get("coiled.token", None))
        return LocalCluster(n_workers=1, processes=False, dashboard_address=None)

    compute = DaskComputeResource(coiled_cluster={"name": "gnt"}, coiled_token="token-from-env")
    with compute.get_client(cluster_factory=fake_coiled_cluster):
        pass
    assert seen == ["token-from-env"] and dask.config.get("coiled.token", None) is None


def test_scheduler_and_coiled_together_is_a_config_error():
    with pytest.raises(ComputeConfigError, match="not both"):
        _ = DaskComputeResource(scheduler_address="tcp://127.0.0.1:8786", coiled_cluster={}).mode


def reference_data_job():
    """Reconstructable entry point: Dask workers load the job from here in their own processes."""
    from gnt_assets.definitions import defs

    return defs.resolve_job_def("reference_data_on_dask")


def test_reference_data_job_runs_its_steps_on_the_dask_executor(storage_root, instance):
    """The product's unpartitioned job really executes through dagster-dask (not in process):
    every step starts in a Dask worker process and the assets and their checks land in the instance."""
    with dg.execute_job(dg.reconstructable(reference_data_job), instance=instance) as result:
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        step_pids = {e.pid for e in result.all_events if e.event_type_value == "STEP_START"}
        assert step_pids and os.getpid() not in step_pids  # steps ran in Dask worker processes
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == set(REFERENCE_DATA)
    evaluations = instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(dg.AssetKey("sentinel_grid"), "grid_layout_disjoint"), limit=1)
    assert evaluations and evaluations[0].status.value == "SUCCEEDED"
