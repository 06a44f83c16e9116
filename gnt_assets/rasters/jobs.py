"""raster_cache_cleanup: the seed's cache-cleanup as a job (days_old, min_access)."""


import dagster as dg

from gnt_assets.rasters import resample
from gnt_assets.rasters.assets import state_folder
from gnt_assets.resources.storage import StorageResource
from gnt_assets.run_monitoring import IN_PROCESS_EXECUTOR


class CleanupConfig(dg.Config):
    days_old: float = 30.0
    min_access: int = 2


@dg.op(description="Removes result-store entries not accessed for days_old days and hit fewer than min_access times.")
def clean_result_cache(context: dg.OpExecutionContext, config: CleanupConfig, storage: StorageResource) -> None:
    store = resample.ResultStore(state_folder(storage) / "cache")
    removed = store.cleanup(config.days_old, config.min_access)
    context.log.info(f"removed {len(removed)} cached results; now {store.stats()}")


@dg.job(description="Cleans the rasters result cache: removes results not read for days_old days and read fewer than "
                    "min_access times.", executor_def=IN_PROCESS_EXECUTOR)
def raster_cache_cleanup() -> None:
    clean_result_cache()


raster_cache_cleanup_schedule = dg.ScheduleDefinition(
    name="raster_cache_cleanup_weekly", job=raster_cache_cleanup, cron_schedule="0 3 * * 0",
    run_config={"ops": {"clean_result_cache": {"config": {"days_old": 30.0, "min_access": 2}}}},
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="Off by default. Sundays at 03:00 UTC: removes cached raster results not read for 30 days and read fewer than twice.",
)
