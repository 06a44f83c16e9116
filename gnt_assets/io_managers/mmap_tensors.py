"""Memory-mapped tensors: one packed data file + ``index.json`` per asset partition.

Assets return a ``TensorPack``; downstream assets (and users) get the published
``PackedIndex``, which maps the data lazily (``np.memmap`` / ``torch.from_file``
locally, ranged reads on object stores). Layout below the storage root:
``tensors/<asset key>/<partition segments>/`` where a country x year key
``ZAF|2020`` becomes ``ZAF/2020``.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg
from upath import UPath

from gnt_assets.core.keys import check_key
from gnt_assets.core.packed_tensors import INDEX_NAME, PackedIndex, TensorPack, open_packed
from gnt_assets.core.stac_catalog import catalog_output, family_for, tiles_footprint
from gnt_assets.resources.storage import StorageResource

ROOT_FOLDER = "tensors"


def partition_segments(partition_key: str | dg.MultiPartitionKey | None) -> list[str]:
    """Path segments of a partition key: one per dimension (sorted by name, as Dagster does)."""
    if partition_key is None:
        return []
    if isinstance(partition_key, dg.MultiPartitionKey):
        segments = [partition_key.keys_by_dimension[d] for d in sorted(partition_key.keys_by_dimension)]
    else:
        segments = str(partition_key).split("|")
    return [check_key(s, what="partition key segment") for s in segments]


def tensor_folder(root: UPath, asset_key: dg.AssetKey, partition_key: str | dg.MultiPartitionKey | None) -> UPath:
    return root.joinpath(ROOT_FOLDER, *asset_key.path, *partition_segments(partition_key))


def _stac_item(context: dg.OutputContext, root, name: str, partition, folder: UPath, index, pack: TensorPack) -> dict:
    """The packed tensors' STAC item (SHA-256 of the data file as file:checksum, footprint of the world tiles it holds)."""
    if not family_for(name):
        return {}
    try:
        path = catalog_output(root, name, partition, {"data": folder / index.data_file, "index": folder / INDEX_NAME},
                              hints={"data": {"sha256": index.sha256}, "index": {"role": "metadata"}}, footprint=tiles_footprint(pack.rows))
    except Exception as error:  # the tensors are written and indexed: a catalog problem is reported, never a failed output
        context.log.warning(f"no STAC item for {name} {partition or ''}: {type(error).__name__}: {error}")
        return {"stac_item_error": dg.MetadataValue.text(f"{type(error).__name__}: {error}")}
    return {"stac_item": dg.MetadataValue.path(str(path))}


class MmapTensorIOManager(dg.ConfigurableIOManager):
    """Stores ``TensorPack`` outputs as packed tensors and loads them as lazy ``PackedIndex`` readers."""

    storage: StorageResource

    def _folder(self, asset_key: dg.AssetKey, partition_key) -> UPath:
        return tensor_folder(self.storage.root_path, asset_key, partition_key)

    def handle_output(self, context: dg.OutputContext, obj: TensorPack) -> None:
        name = context.asset_key.to_user_string()
        if not isinstance(obj, TensorPack):
            raise TypeError(f"{name}: mmap_tensor_io_manager stores TensorPack objects, got {type(obj).__name__}")
        key = context.partition_key if context.has_partition_key else None
        folder = self._folder(context.asset_key, key)
        index = obj.write(folder)
        index_bytes = int((folder / INDEX_NAME).stat().st_size)
        context.add_output_metadata(
            {
                "files": 2,
                "bytes": index.data_bytes + index_bytes,
                "records": index.count,
                "record_bytes": index.record_dtype.itemsize,
                "sha256": index.sha256,
                "path": dg.MetadataValue.path(str(folder)),
                **_stac_item(context, self.storage.root_path, name, key, folder, index, obj),
            }
        )

    def load_input(self, context: dg.InputContext) -> PackedIndex | dict[str, PackedIndex]:
        asset_key = context.asset_key
        if not context.has_asset_partitions:
            return open_packed(self._folder(asset_key, None))
        keys: Sequence[str] = context.asset_partition_keys
        if len(keys) == 1:
            return open_packed(self._folder(asset_key, keys[0]))
        return {key: open_packed(self._folder(asset_key, key)) for key in keys}
