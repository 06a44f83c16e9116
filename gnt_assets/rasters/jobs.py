"""raster_cache_cleanup: the seed's cache-cleanup as a job (days_old, min_access); raster_archive_job: retiring sources."""


import dagster as dg

from gnt_assets.core.errors import InputError
from gnt_assets.partitions import raster_sources
from gnt_assets.rasters import resample, states
from gnt_assets.rasters.assets import GRIDS, state_folder
from gnt_assets.rasters.states import archive_outputs
from gnt_assets.resources.storage import StorageResource
from gnt_assets.run_monitoring import IN_PROCESS_EXECUTOR


class ArchiveError(InputError):
    """An archive or restore request that names a source it cannot act on."""


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


class ArchiveConfig(dg.Config):
    keys: list[str]
    restore: bool = False  # True: forget the archived state, so the folder sensor registers the source again


@dg.op(description="Retires raster sources (state archived): moves their tiles and resampled outputs under "
                   "rasters/archive/<key>/, removes their raster_sources partitions and keeps the folder sensor from "
                   "registering them again. With restore, the sources are registered again as new.")
def archive_sources(context: dg.OpExecutionContext, config: ArchiveConfig, storage: StorageResource) -> None:
    folder = state_folder(storage)
    known = set(context.instance.get_dynamic_partitions(raster_sources.name))
    for key in config.keys:
        if config.restore:
            if not states.is_archived(folder, key):
                raise ArchiveError(f"raster {key!r} is not archived; nothing to restore")
            states.clear_state(folder, key)
            context.log.info(f"{key}: restored; the folder sensor registers it again on its next tick "
                             f"(its old outputs stay under {folder / 'archive' / key})")
            continue
        if key not in known and not (folder / "sources" / f"{key}.json").exists():
            raise ArchiveError(f"raster {key!r} is neither a raster_sources partition nor in the catalog")
        moved = archive_outputs(folder, key, [spec.name for spec in GRIDS])
        states.set_state(folder, key, "archived", f"retired by run {context.run_id}; {len(moved)} outputs under archive/{key}")
        if key in known:
            context.instance.delete_dynamic_partition(raster_sources.name, key)
        context.log.info(f"{key}: archived ({len(moved)} outputs moved: {', '.join(moved) or 'none'})")


@dg.job(description="Archives (retires) raster sources, or restores archived ones: config keys and restore.",
        executor_def=IN_PROCESS_EXECUTOR)
def raster_archive_job() -> None:
    archive_sources()
