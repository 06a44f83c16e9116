"""Zarr stores below ``{storage root}/zarr/``: one store per asset, one region per partition.

A partitioned asset returns a :class:`ZarrRegionWrite`: its own data plus the
template of the whole store (coordinates and dtypes of the full extent, data
never computed). The manager creates the store from the template the first
time, writes the partition's region (refused if it would share a chunk with
another partition) and records which region the partition owns, so a
downstream asset gets exactly that region, lazily (several partitions: their regions
joined along the dimension they differ in). An unpartitioned asset may
return a plain ``xr.Dataset``; it is written as a whole store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import dagster as dg
import xarray as xr
from pydantic import Field
from upath import UPath

from gnt_assets.core.atomic import atomic_write_text
from gnt_assets.core.keys import check_key
from gnt_assets.core.zarr_regions import StoreLayout, create_store, open_store, region_status, require_complete, write_region
from gnt_assets.resources.storage import StorageResource


@dataclass(frozen=True)
class ZarrRegionWrite:
    data: xr.Dataset
    template: xr.Dataset
    encoding: dict | None = None


def _partition_record(store: UPath, partition_key: str) -> UPath:
    check_key(partition_key.replace("|", "_"), what="partition key")
    return store.parent / f".{store.name}.partitions" / f"{partition_key.replace('|', '__')}.json"


class ZarrRegionIOManager(dg.ConfigurableIOManager):
    """Writes xarray Datasets as zarr v3 regions of one store per asset."""

    storage: StorageResource
    codec_pipeline: str | None = Field(
        default=None,
        description="zarr codec pipeline for region writes: 'shards' (zarr-python's, except that whole shards of "
        "in-memory data on local disk, in bytes or bytes+zstd codecs, are encoded on all cores by zarr_shards into "
        "zarr-python's own bytes; anything else falls back to zarr-python), 'default' (zarr-python's for everything) "
        "or 'zarrs' (Rust, local disk); unset: GNT_ZARR_CODEC_PIPELINE, else 'shards'. Stores read the same with any.",
    )

    def store_path(self, asset_key: dg.AssetKey) -> UPath:
        *folders, name = asset_key.path
        return self.storage.path("zarr", *folders, f"{name}.zarr")

    def handle_output(self, context: dg.OutputContext, obj: ZarrRegionWrite | xr.Dataset) -> None:
        store = self.store_path(context.asset_key)
        if isinstance(obj, xr.Dataset):
            if context.has_partition_key:
                raise TypeError(f"{context.asset_key.to_user_string()}: partitioned zarr outputs must be ZarrRegionWrite")
            obj = ZarrRegionWrite(data=obj, template=obj.chunk() if not obj.chunks else obj)
        # checked before anything is written: a key with ".." or "/" fails with nothing in the store
        record = _partition_record(store, context.partition_key) if context.has_partition_key else None
        create_store(store, obj.template, encoding=obj.encoding)
        layout = StoreLayout.read(store)  # one metadata read for the write and its verification
        region = write_region(store, obj.data, layout, codec_pipeline=self.codec_pipeline)
        status = region_status(store, region, layout=layout)
        if not status.complete:
            raise RuntimeError(f"zarr store {store}: region {region} incomplete after writing ({status})")
        if record is not None:
            atomic_write_text(
                record,
                json.dumps({dim: [span.start, span.stop] for dim, span in region.items()}),
            )
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(store)),
                "region": dg.MetadataValue.json({dim: [s.start, s.stop] for dim, s in region.items()}),
                "chunks_written": status.present,
                "files": status.present,
                "bytes": status.stored_bytes,
                "uncompressed_bytes": int(obj.data.nbytes),
            }
        )

    def load_input(self, context: dg.InputContext) -> xr.Dataset:
        store = self.store_path(context.asset_key)
        asset = context.asset_key.to_user_string()
        if not context.has_asset_partitions:
            # the whole store is one region: refused while its write is unfinished
            require_complete(store, {"(whole store)": {}}, what=f"{asset}")
            return open_store(store)
        regions = {}
        for key in context.asset_partition_keys:
            record = _partition_record(store, key)
            if not record.exists():
                raise FileNotFoundError(f"{asset} partition {key} has no region in {store}")
            regions[key] = {dim: slice(*span) for dim, span in json.loads(record.read_text()).items()}
        # a rewrite removes the region's marker first: a reader never takes a half-rewritten region
        require_complete(store, regions, what=f"{asset} partition")
        return _select_regions(open_store(store), list(regions.values()))


def _select_regions(dataset: xr.Dataset, regions: list[dict[str, slice]]) -> xr.Dataset:
    """The partitions' regions, lazily: one region as is, regions that differ along one dimension
    (days, months) joined in store order, anything else as the box around them."""
    varying = {dim for region in regions for dim, span in region.items() if span != regions[0].get(dim)}
    if len(regions) == 1 or not varying:
        return dataset.isel(regions[0])
    if len(varying) == 1:
        (dim,) = varying
        ordered = sorted(regions, key=lambda region: region[dim].start)
        return xr.concat([dataset.isel(region) for region in ordered], dim=dim)
    box = {
        dim: slice(min(r[dim].start for r in regions), max(r[dim].stop for r in regions))
        for dim in set().union(*regions)
    }
    return dataset.isel(box)
