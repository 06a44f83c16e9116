"""The rasters pipeline's part of `make demo`: three generated rasters registered by the
folder sensor, tiled, and resampled onto one square and one hexagon grid; then the square grid
is redefined at twice its cell size and back, to show results recomputed for the new cells and
answered from the cache for the old ones (results are keyed on the grid's content, not its name)."""

import dataclasses

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
    redefine_a_grid(instance, defs, "temperature")
    materialize_partitions(defs, instance, ["raster_catalog"], job="rasters_demo")


def redefine_a_grid(instance: dg.DagsterInstance, defs: dg.Definitions, key: str) -> None:
    """The first square grid at twice its cell size (as an edited grids file would define it), then as it was."""
    from gnt_assets.demo_runs import run_job
    from gnt_assets.rasters.assets import GRIDS, STUDY_AREA, grid_asset, resampled_asset

    spec = next(s for s in GRIDS if s.kind == "square")
    wider = dataclasses.replace(spec, resolution_m=spec.resolution_m * 2)
    grid_key, resampled_key = dg.AssetKey(f"grid_{spec.name}"), dg.AssetKey(f"resampled_{spec.name}")
    kept = [a for a in defs.assets if not set(a.keys) & {grid_key, resampled_key}]
    redefined = dg.Definitions(assets=[*kept, grid_asset(wider, STUDY_AREA), resampled_asset(wider)],
                               asset_checks=list(defs.asset_checks or []), resources=defs.resources)
    for label, definitions, size in (("redefined", redefined, wider.resolution_m), ("restored", defs, spec.resolution_m)):
        run_job(definitions, instance, "rasters_demo", [grid_key])
        outcome = run_job(definitions, instance, "rasters_demo", [resampled_key], key)
        metadata = outcome.asset_materializations_for_node(resampled_key.path[-1])[0].metadata
        print(f"rasters: {spec.name} {label} at {size / 1000:g} km: {metadata['cells'].value} cells for {key}, "
              f"{metadata['computed'].value} results computed, {metadata['cache_hits'].value} from the cache")
