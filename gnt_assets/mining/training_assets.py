"""Mining II assets: training tiles from the zarr regions, and their copy on the HPC target.

    landsat_regions + mining_clusters + mine_polygons -> mining_training_tiles -> mining_hpc_transfer
"""

import dagster as dg
import geopandas as gpd
import numpy as np

from gnt_assets.core.packed_tensors import PackedIndex, TensorPack
from gnt_assets.core.quicklook import quicklook
from gnt_assets.materialization import quicklook_metadata
from gnt_assets.mining.exports import without_skipped
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.regions import BANDS, region_path
from gnt_assets.mining.training_tiles import (
    LABEL_RULE,
    cluster_tiles,
    open_region,
    preview_tile,
    region_chunks_present,
    training_tiles,
)
from gnt_assets.mining.transfer import partition_target, transfer_partition
from gnt_assets.partitions import mining_country_year
from gnt_assets.resources.storage import StorageResource

by_country = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="country")


def _country_year(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["country"], keys["year"]


@dg.asset(
    partitions_def=mining_country_year,
    group_name="mining",
    io_manager_key="mmap_tensor_io_manager",
    ins={"mining_clusters": dg.AssetIn(partition_mapping=by_country), "mine_polygons": dg.AssetIn()},
    deps=[dg.AssetDep("landsat_regions")],
    backfill_policy=dg.BackfillPolicy.multi_run(1),  # one country-year per run: the code reads one partition key
)
def mining_training_tiles(
    context: dg.AssetExecutionContext, storage: StorageResource, mining_clusters: gpd.GeoDataFrame, mine_polygons: gpd.GeoDataFrame
) -> dg.Output[TensorPack]:
    """Every world tile the country's clusters cover in that year, once however many clusters cover it: 7-band
    features (NaN->0), valid mask and mine labels, written as they are cut (memory does not grow with the country), packed into one memory-mappable file plus index for PyTorch (read it with gnt_assets.mining.dataset.MiningTiles)."""
    country, year = _country_year(context)
    path = region_path(storage.root_path, country, year)
    polygons = mine_polygons.to_crs(4326)
    pack, _ = training_tiles(
        open_region(path, context.partition_key),
        cluster_tiles(without_skipped(storage.root_path, country, year, mining_clusters)),  # not clusters left out of the region
        list(polygons.geometry),
        partition=context.partition_key,
        year=int(year),
        chunks_present=region_chunks_present(path),
        must_touch=np.nonzero((polygons["ISO3_CODE"] == country).to_numpy())[0].tolist(),
    )
    metadata = {
        "tiles": len(pack.rows["tile_ix"]),
        "clusters": len({c for ids in pack.rows["cluster_ids"] for c in ids}),
        "nan_only_tiles": dg.MetadataValue.json(pack.attrs["nan_only"]),
        "mines_without_tile": pack.attrs["mines_without_tile"],
        "mine_pixels": int(sum(pack.rows["label_pixels"])),
        "label_rule": LABEL_RULE,
    }
    if (preview := preview_tile(pack)) is not None:  # the tile with most mine pixels: nodata transparent, mines outlined
        best = int(np.argmax(pack.rows["label_pixels"]))
        record = pack.record(best)
        features, labels, valid = (record[name] for name in ("features", "labels", "valid"))
        metadata |= quicklook_metadata(quicklook(
            features[[BANDS.index(b) for b in ("red", "green", "blue")]], valid=valid[0], outline=labels[0],
            outline_label="mine polygons (label pixels)", variable="Landsat red, green, blue", crs="EPSG:4326"), title="tile_preview")
        metadata["preview_tile"] = preview[1]
    return dg.Output(pack, metadata=metadata)


@dg.asset(partitions_def=mining_country_year, group_name="mining", backfill_policy=dg.BackfillPolicy.multi_run(1))
def mining_hpc_transfer(
    context: dg.AssetExecutionContext, hpc: HPCTargetResource, mining_training_tiles: PackedIndex
) -> dg.MaterializeResult:
    """The partition's packed tiles and index copied to the HPC target, verified by size and SHA-256 on the
    target; a re-run continues a cut-off copy and copies only what is missing or different."""
    country, year = _country_year(context)
    copied = transfer_partition(mining_training_tiles, partition_target(hpc.root_path(), country, year), context.partition_key)
    return dg.MaterializeResult(
        metadata={
            "files": len(copied),
            "bytes": sum(f.bytes for f in copied),
            "copied_files": sum(f.copied for f in copied),
            "already_there": sum(not f.copied for f in copied),
            "bytes_sent": sum(f.sent for f in copied),  # less than the copied files' size when a cut-off copy was continued
            "sha256": mining_training_tiles.sha256,
            "target": hpc.describe() + f"/{country}/{year}",
        }
    )
