"""Jobs that span pipelines.

``reference_data_on_dask`` runs the unpartitioned reference assets (mine polygons,
analysis grids, the Sentinel AOI and grid) as separate steps on a Dask cluster
through dagster-dask's executor. That executor fails on partitioned runs in this
Dagster release (DESIGN section 7), so partitioned assets use Dask inside the
asset through the ``compute`` resource instead.
"""

import os

import dagster as dg
from dagster_dask import dask_executor

REFERENCE_DATA = ["mine_polygons", "grid_square_5km", "grid_h3_5km", "sentinel_aoi", "sentinel_grid"]


def _cluster() -> dict:
    address = os.environ.get("GNT_DASK_SCHEDULER")
    if address:
        return {"existing": {"address": address}}
    return {"local": {"n_workers": 2, "threads_per_worker": 1}}  # dashboard on :8787 when free


reference_data_on_dask = dg.define_asset_job(
    "reference_data_on_dask",
    selection=dg.AssetSelection.assets(*REFERENCE_DATA),
    # not wrapped by heartbeating: dagster-dask insists that the run's executor is its own class, so this
    # job's runs send no heartbeat and are watched by their code server and max_runtime only
    executor_def=dask_executor.configured({"cluster": _cluster()}),
    description="The unpartitioned reference assets, one Dask task per step (GNT_DASK_SCHEDULER, else a local cluster).",
)
