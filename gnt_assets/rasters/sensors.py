"""raster_folder_sensor: new rasters in the watched folder or the registry become partitions and runs."""


import dagster as dg
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import sources
from gnt_assets.rasters.assets import raster_source, raster_tiles, resampled_assets
from gnt_assets.resources.rasters import RasterFolderResource
from gnt_assets.resources.storage import StorageResource

raster_registration_job = dg.define_asset_job(
    "raster_registration_job",
    selection=dg.AssetSelection.assets(raster_source, raster_tiles, *resampled_assets),
    partitions_def=raster_sources,
    executor_def=dg.in_process_executor,  # one process per run: steps are light, tiles fan out on Dask
)

raster_tile_job = dg.define_asset_job("raster_tile_job", selection=dg.AssetSelection.assets(raster_source, raster_tiles), partitions_def=raster_sources, executor_def=dg.in_process_executor)
raster_resample_job = dg.define_asset_job("raster_resample_job", selection=dg.AssetSelection.assets(*resampled_assets), partitions_def=raster_sources,
                                          executor_def=dg.in_process_executor)


@dg.sensor(job=raster_registration_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Adds a raster_sources partition and launches its run for every new raster in the watched folder or registry.")
def raster_folder_sensor(context: dg.SensorEvaluationContext, storage: StorageResource, raster_folder: RasterFolderResource) -> dg.SensorResult:
    problems: list[str] = []
    found = sources.discover(raster_folder.folder_path(storage.root_path), raster_folder.registry_path(storage.root_path), problems)
    for problem in problems:
        context.log.warning(problem)
    known = set(context.instance.get_dynamic_partitions(raster_sources.name))
    new = sorted(set(found) - known)
    return dg.SensorResult(
        skip_reason="; ".join(problems) if problems and not new else None,
        run_requests=[dg.RunRequest(partition_key=key, run_key=f"{key}:{found[key].path}") for key in new],
        dynamic_partitions_requests=[raster_sources.build_add_request(new)] if new else [],
    )
