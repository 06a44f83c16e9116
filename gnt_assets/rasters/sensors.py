"""raster_folder_sensor: new or replaced rasters in the watched folder or the registry become partitions and runs."""


import json

import dagster as dg
from upath import UPath

from gnt_assets.core.atomic import located
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import sources, states
from gnt_assets.rasters.assets import raster_source, raster_tiles, resampled_assets, state_folder
from gnt_assets.rasters.resources import RasterFolderResource
from gnt_assets.resources.storage import StorageResource
from gnt_assets.run_monitoring import IN_PROCESS_EXECUTOR

raster_registration_job = dg.define_asset_job(
    "raster_registration_job",
    selection=dg.AssetSelection.assets(raster_source, raster_tiles, *resampled_assets),
    executor_def=IN_PROCESS_EXECUTOR,  # one process per run: steps are light, tiles fan out on Dask
    description="Registers one raster: validates and hashes it, cuts it into zarr tiles and resamples it onto every grid.",
)

raster_tile_job = dg.define_asset_job("raster_tile_job", selection=dg.AssetSelection.assets(raster_source, raster_tiles), executor_def=IN_PROCESS_EXECUTOR,
                                      description="Validates one raster and cuts it into zarr tiles, without resampling.")
raster_resample_job = dg.define_asset_job("raster_resample_job", selection=dg.AssetSelection.assets(*resampled_assets), executor_def=IN_PROCESS_EXECUTOR,
                                          description="Resamples one registered raster onto every grid (for example after a grid changed).")


@dg.sensor(job=raster_registration_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING,
           description="Every minute: each new or replaced raster in the watched folder or the registry becomes a raster_sources "
                       "partition and starts its registration run. Running by default; it only registers rasters. Archived sources are skipped.")
def raster_folder_sensor(context: dg.SensorEvaluationContext, storage: StorageResource, raster_folder: RasterFolderResource) -> dg.SensorResult:
    problems: list[str] = []
    found = sources.discover(raster_folder.folder_path(storage.root_path), raster_folder.registry_path(storage.root_path), problems)
    for problem in problems:
        context.log.warning(problem)
    archived = {key for key, record in states.read_states(state_folder(storage)).items() if record["state"] == "archived"}
    found = {key: entry for key, entry in found.items() if key not in archived}  # retired: never registered again
    known = set(context.instance.get_dynamic_partitions(raster_sources.name))
    new = sorted(set(found) - known)
    # A file whose size or mtime changed since the last tick is registered again: new content
    # hash -> new data version -> its tiles and resampled partitions show stale and rerun.
    # The run key carries the signature, so an unchanged file is never resubmitted.
    seen = json.loads(context.cursor or "{}")
    signatures = {key: _signature(located(entry.path, storage.root_path)) for key, entry in found.items()}
    changed = sorted(key for key in found if key in known and key in seen and seen[key] != signatures[key])
    idle = "; ".join(problems) if problems else f"no new or replaced rasters in {raster_folder.folder} or {raster_folder.registry}"
    return dg.SensorResult(
        skip_reason=idle if not (new or changed) else None,
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}:{found[key].path}:{signatures[key]}") for key in sorted(new + changed)],
        dynamic_partitions_requests=[raster_sources.build_add_request(new)] if new else [],
        cursor=json.dumps(signatures, sort_keys=True),
    )


def _signature(path: UPath) -> str:
    try:
        stat = path.stat()
    except (FileNotFoundError, OSError):
        return "missing"
    return f"{stat.st_size}:{stat.st_mtime}"
