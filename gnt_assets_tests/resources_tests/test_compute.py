"""Dask runs inside assets through the compute resource: LocalCluster, a scheduler address, or Coiled."""

from __future__ import annotations

import dagster as dg
import pytest
from dagster_dask import dask_executor
from distributed import Client, LocalCluster

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


def test_scheduler_and_coiled_together_is_a_config_error():
    with pytest.raises(ComputeConfigError, match="not both"):
        DaskComputeResource(scheduler_address="tcp://127.0.0.1:8786", coiled_cluster={}).mode


@dg.asset
def cell_values() -> list[int]:
    return [1, 2, 3]


@dg.asset
def cell_total(cell_values: list[int]) -> int:
    return sum(cell_values)


def test_dagster_dask_executor_runs_unpartitioned_jobs(instance):
    """dagster-dask's executor works for unpartitioned jobs (it fails on partitioned ones in 1.13)."""
    job = dg.define_asset_job("dask_job", [cell_values, cell_total], executor_def=dask_executor)
    defs = dg.Definitions(assets=[cell_values, cell_total], jobs=[job])
    result = defs.get_job_def("dask_job").execute_in_process(
        instance=instance, run_config={"execution": {"config": {"cluster": {"local": {"n_workers": 1, "processes": False}}}}}
    )
    assert result.success and result.output_for_node("cell_total") == 6
