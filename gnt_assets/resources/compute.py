"""Dask inside assets (DESIGN section 7): a LocalCluster, an existing scheduler, or Coiled.

The dagster-dask *executor* fails on partitioned runs in this Dagster release,
so assets ask this resource for a ``distributed.Client`` and map work on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from gnt_assets.core.errors import InputError


class ComputeConfigError(InputError, RuntimeError):
    pass


class DaskComputeResource(dg.ConfigurableResource):
    """Where chunk-level work runs. Exactly one of the three modes applies:

    * ``scheduler_address`` set: connect to that Dask scheduler;
    * ``coiled_cluster`` set: start (or reuse, by name) a Coiled cluster with those options;
    * neither: a ``distributed.LocalCluster`` on this machine, torn down after the step.
    """

    scheduler_address: str | None = Field(default=None, description="tcp://host:8786 of a running scheduler.")
    coiled_cluster: dict[str, Any] | None = Field(
        default=None,
        description="Keyword arguments for coiled.Cluster, e.g. {name, n_workers, worker_cpu, region}.",
    )
    coiled_token: str | None = Field(default=None, description="Coiled API token; use EnvVar('DASK_COILED__TOKEN').")
    n_workers: int = Field(default=2, description="LocalCluster workers.")
    threads_per_worker: int = Field(default=1, description="LocalCluster threads per worker.")
    processes: bool = Field(default=False, description="LocalCluster with worker processes instead of threads.")
    memory_limit: str = Field(default="4GiB", description="LocalCluster memory per worker.")

    @property
    def mode(self) -> str:
        if self.scheduler_address and self.coiled_cluster is not None:
            raise ComputeConfigError("compute: set scheduler_address or coiled_cluster, not both")
        if self.scheduler_address:
            return "scheduler"
        if self.coiled_cluster is not None:
            return "coiled"
        return "local"

    def coiled_cluster_kwargs(self) -> dict[str, Any]:
        """The request sent to ``coiled.Cluster``: defaults the seed used, overridden by config."""
        kwargs: dict[str, Any] = {
            "name": "gnt-assets",
            "n_workers": 4,
            "worker_cpu": 4,
            "idle_timeout": "5 minutes",
            "shutdown_on_close": False,
        }
        kwargs.update(self.coiled_cluster or {})
        return kwargs

    @contextlib.contextmanager
    def get_client(self, cluster_factory: Callable[..., Any] | None = None) -> Iterator[Any]:
        """A ``distributed.Client`` for the configured mode; ``cluster_factory`` replaces
        ``coiled.Cluster`` (tests use it to inspect the request without an account)."""
        import dask
        from distributed import Client, LocalCluster

        mode = self.mode
        if mode == "scheduler":
            with Client(self.scheduler_address) as client:
                yield client
            return
        if mode == "coiled":
            if cluster_factory is None:
                import coiled

                cluster_factory = coiled.Cluster
            # The token only for this cluster's lifetime: dask's config is process-wide.
            token = {"coiled.token": self.coiled_token} if self.coiled_token else {}
            with dask.config.set(token):
                cluster = cluster_factory(**self.coiled_cluster_kwargs())
                with Client(cluster) as client:
                    yield client
            return
        with LocalCluster(
            n_workers=self.n_workers,
            threads_per_worker=self.threads_per_worker,
            processes=self.processes,
            memory_limit=self.memory_limit,
            dashboard_address=None,
        ) as cluster, Client(cluster) as client:
            yield client
