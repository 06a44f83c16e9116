"""The rasters pipeline's part of `make demo`: three generated rasters registered by the
folder sensor, tiled, and resampled onto one square and one hexagon grid."""

import dagster as dg


def run(instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
    """Materializes the rasters demo partitions on the local backends."""
    from gnt_assets.demo_runs import materialize_partitions
    from gnt_assets.rasters.assets import grid_assets, raster_source, raster_tiles, resampled_assets
    from gnt_assets.rasters.local import sample_rasters
    from gnt_assets.rasters.sensors import raster_folder_sensor

    resources = defs.resources
    folder = resources["raster_folder"].folder_path(resources["storage"].root_path)
    sample_rasters(folder)
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources={k: resources[k] for k in ("storage", "raster_folder")})
    result = raster_folder_sensor(context)
    for request in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    keys = [request.partition_key for request in result.run_requests] or instance.get_dynamic_partitions("raster_sources")
    print(f"rasters: registered {', '.join(keys)}")
    materialize_partitions(defs, instance, [a.key for a in grid_assets], job="rasters_demo")
    materialize_partitions(defs, instance, [raster_source.key, raster_tiles.key, *(a.key for a in resampled_assets)], keys,
                           job="raster_registration_job")  # what the folder sensor's runs do
    materialize_partitions(defs, instance, ["raster_catalog"], job="rasters_demo")
