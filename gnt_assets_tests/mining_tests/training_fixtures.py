"""A small country-year zarr region, clusters and mine polygons in Mining I's contract layout.

Region: ``reflectance`` float32 (band, latitude, longitude) on world-grid pixel
centres, chunks (7, 64, 64) aligned to world tiles, NaN where no data. Tiles
listed in ``nan_tiles`` are written as all-NaN chunks; ``missing`` are never written.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from upath import UPath

from gnt_assets.core.worldgrid import RESOLUTION, WORLD, world_tile
from gnt_assets.mining.training_tiles import BANDS, TILE

# A 4 x 3 tile block in southern Africa.
IX0, IY0, NX, NY = 12030, 6020, 4, 3


def region_geobox(ix0: int = IX0) -> GeoBox:
    return WORLD[IY0 * TILE : (IY0 + NY) * TILE, ix0 * TILE : (ix0 + NX) * TILE]


def cluster_tiles(ix0: int = IX0) -> dict[str, list[tuple[int, int]]]:
    """Cluster 'a' covers the left 2x2 block, 'b' the right column pair of the top row plus one shared tile."""
    return {
        "a" * 64: [(ix0 + i, IY0 + j) for i in range(2) for j in range(2)],
        "b" * 64: [(ix0 + 2, IY0), (ix0 + 3, IY0), (ix0 + 1, IY0 + 1), (ix0 + 3, IY0 + 2)],
    }


def mine_polygons() -> gpd.GeoDataFrame:
    """Three mines inside the block (one across a tile edge), one far away, one in a neighbour country."""
    def rect(ix, iy, px0, py0, px1, py1):
        left, top = world_tile(ix, iy).affine.c, world_tile(ix, iy).affine.f
        return shapely.box(left + px0 * RESOLUTION, top - py1 * RESOLUTION, left + px1 * RESOLUTION, top - py0 * RESOLUTION)

    geometries = [
        rect(IX0, IY0, 10.2, 12.1, 30.7, 20.3),
        rect(IX0 + 1, IY0, 50.2, 40.3, 74.6, 60.7),  # crosses into tile (IX0+2, IY0)
        rect(IX0 + 3, IY0 + 2, 0, 0, 64, 64),  # the whole NaN tile
        shapely.box(10, 10, 10.01, 10.01),  # touches no tile
        rect(IX0 + 1, IY0 + 1, 5.2, 5.3, 9.7, 9.6),
    ]
    return gpd.GeoDataFrame(
        {"ISO3_CODE": ["ZAF", "ZAF", "ZAF", "ZAF", "BWA"], "COUNTRY_NAME": ["South Africa"] * 4 + ["Botswana"], "AREA": [1.0] * 5},
        geometry=geometries,
        crs="EPSG:4326",
    )


def mining_clusters(country: str = "ZAF", ix0: int = IX0) -> gpd.GeoDataFrame:
    records = []
    for cluster_id, tiles in cluster_tiles(ix0).items():
        boxes = [shapely.box(*world_tile(ix, iy).extent.boundingbox) for ix, iy in tiles]
        region = shapely.box(*shapely.union_all(boxes).bounds)
        records.append({"cluster_id": cluster_id, "country": country, "geometry": region, "tiles": [[ix, iy] for ix, iy in tiles], "mine_ids": [0]})
    return gpd.GeoDataFrame(records, geometry="geometry", crs="EPSG:4326")


def reflectance(year: int) -> np.ndarray:
    rng = np.random.default_rng(year)
    data = rng.uniform(0.02, 0.4, size=(len(BANDS), NY * TILE, NX * TILE)).astype("float32")
    data[-1] = rng.uniform(280, 320, size=data[-1].shape)
    data[:, 3:9, 20:23] = np.nan  # a few NaN pixels inside a valid tile
    return data


def write_region(path: UPath, year: int, *, nan_tiles=((3, 2),), missing=(), ix0: int = IX0) -> UPath:
    """With Mining I's region writer (regions.create_region / write_cluster), as landsat_regions does.

    ``nan_tiles`` and ``missing`` are (column, row) tile positions inside the region; a missing tile
    loses the shard it is in."""
    from gnt_assets.mining.regions import SHARD_TILES, create_region, write_cluster

    geobox = region_geobox(ix0)
    data = reflectance(year)
    for i, j in nan_tiles:
        r, c = j * TILE, i * TILE
        data[:, r : r + TILE, c : c + TILE] = np.nan
    create_region(path, geobox)
    write_cluster(path, geobox, data)
    for i, j in missing:
        (path / "reflectance" / "c" / "0" / str(j // SHARD_TILES) / str(i // SHARD_TILES)).unlink(missing_ok=True)
    return path


# Stand-ins for Mining I's upstream assets (same keys, partitions and storage layout), so the
# training tiles, transfer and janitor run through Dagster on this fixture data.
import dagster as dg  # noqa: E402

from gnt_assets.mining.regions import region_path  # noqa: E402
from gnt_assets.partitions import mining_country, mining_country_year  # noqa: E402
from gnt_assets.resources.storage import StorageResource  # noqa: E402

FIXTURE_IX0 = {"ZAF": IX0, "NAM": IX0 + 100}


@dg.asset(name="mine_polygons", io_manager_key="geoparquet_io_manager", group_name="mining")
def mine_polygons_standin() -> gpd.GeoDataFrame:
    return mine_polygons()


@dg.asset(name="mining_clusters", io_manager_key="geoparquet_io_manager", partitions_def=mining_country, group_name="mining")
def mining_clusters_standin(context) -> gpd.GeoDataFrame:
    return mining_clusters(context.partition_key, FIXTURE_IX0[context.partition_key])


@dg.asset(name="landsat_regions", partitions_def=mining_country_year, group_name="mining")
def landsat_regions_standin(context, storage: StorageResource) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    country, year = keys["country"], keys["year"]
    write_region(region_path(storage.root_path, country, year), int(year), ix0=FIXTURE_IX0[country])
    return dg.MaterializeResult(metadata={"files": 1, "bytes": 1})


STANDINS = [mine_polygons_standin, mining_clusters_standin, landsat_regions_standin]


def mining_ii_resources(storage_root: UPath, hpc_root: UPath) -> dict:
    from gnt_assets.io_managers.geoparquet import GeoParquetIOManager
    from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
    from gnt_assets.mining.hpc import HPCTargetResource
    from gnt_assets.mining.local.drive import LocalDrive

    storage = StorageResource(root=str(storage_root))
    return {
        "storage": storage,
        "geoparquet_io_manager": GeoParquetIOManager(storage=storage),
        "mmap_tensor_io_manager": MmapTensorIOManager(storage=storage),
        "hpc": HPCTargetResource(url=str(hpc_root)),
        "drive": LocalDrive(root=str(storage_root)),
    }


def materialize_pipeline(instance, resources: dict, partitions, selection=None) -> list:
    """Upstream stand-ins, training tiles and transfer (with their checks) for ``ISO3|year`` partitions."""
    from gnt_assets.mining.janitor_checks import (
        hpc_copy_matches_source,
        training_tiles_have_data_and_labels,
        training_tiles_match_clusters,
    )
    from gnt_assets.mining.training_assets import mining_hpc_transfer, mining_training_tiles

    countries = sorted({p.split("|")[0] for p in partitions})
    instance.add_dynamic_partitions("mining_country", countries)
    assets = [*STANDINS, mining_training_tiles, mining_hpc_transfer, training_tiles_match_clusters, training_tiles_have_data_and_labels, hpc_copy_matches_source]
    dg.materialize([mine_polygons_standin], instance=instance, resources=resources)
    for country in countries:
        dg.materialize([mining_clusters_standin], partition_key=country, instance=instance, resources=resources)
    results = []
    for partition in partitions:
        country, year = partition.split("|")
        results.append(
            dg.materialize(
                assets,
                selection=selection or ["landsat_regions", "mining_training_tiles", "mining_hpc_transfer"],
                partition_key=dg.MultiPartitionKey({"country": country, "year": year}),
                instance=instance,
                resources=resources,
            )
        )
    return results
