"""Tarballs below ``{storage root}/tar-store/`` with their ``.tar.md5`` sidecars.

An asset returns ``TarballContents`` (a name and its members in order); this
manager streams them into ``{name}.tar`` with the MD5 computed on the way and
publishes ``{name}.tar.md5`` after it (see ``core.tarball``). Downstream assets
receive the verified ``Tarball`` (path, MD5, size, member names).
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from gnt_assets.core.keys import check_key
from gnt_assets.core.stac_catalog import catalog_output, family_for
from gnt_assets.core.tarball import Tarball, TarMember, verify_tarball, write_tarball
from gnt_assets.resources.storage import StorageResource


@dataclass(frozen=True)
class TarballContents:
    """What an asset hands to the tar IO manager: ``{name}.tar`` made of ``members``."""

    name: str
    members: tuple[TarMember, ...]


def tarball_path(storage: StorageResource, name: str, folder: str = "tar-store"):
    """Where the tar IO manager puts ``{name}.tar`` (its sidecar is beside it)."""
    return storage.path(folder, f"{check_key(name, what='tarball name')}.tar")


def _stac_item(context: dg.OutputContext, root, tarball: Tarball) -> dict:
    """The tarball's STAC item (with its MD5 as file:checksum), for assets of a cataloged family."""
    asset_key = context.asset_key.to_user_string()
    if not family_for(asset_key):
        return {}
    partition = context.partition_key if context.has_partition_key else None
    try:
        path = catalog_output(root, asset_key, partition, {"tarball": tarball.path, "md5": tarball.md5_path},
                              hints={"tarball": {"md5": tarball.md5}, "md5": {"role": "metadata"}})
    except Exception as error:  # the tarball is written and verified: a catalog problem is reported, never a failed output
        context.log.warning(f"no STAC item for {asset_key} {partition or ''}: {type(error).__name__}: {error}")
        return {"stac_item_error": dg.MetadataValue.text(f"{type(error).__name__}: {error}")}
    return {"stac_item": dg.MetadataValue.path(str(path))}


class TarIOManager(dg.ConfigurableIOManager):
    """Streams ``TarballContents`` into ``{root}/{folder}/{name}.tar`` plus ``{name}.tar.md5``."""

    storage: StorageResource
    folder: str = "tar-store"

    def _path(self, name: str):
        return tarball_path(self.storage, name, self.folder)

    def _name(self, context: dg.OutputContext | dg.InputContext) -> str:
        if context.has_partition_key:
            return context.partition_key
        return context.asset_key.path[-1]

    def handle_output(self, context: dg.OutputContext, obj: TarballContents) -> None:
        if not isinstance(obj, TarballContents):
            raise TypeError(f"{context.asset_key.to_user_string()}: tar_io_manager stores TarballContents, got {type(obj).__name__}")
        tarball = write_tarball(self._path(obj.name), obj.members)
        context.add_output_metadata(
            {
                "files": 2,
                "bytes": tarball.size + int(tarball.md5_path.stat().st_size),
                "members": len(tarball.members),
                "md5": tarball.md5,
                "path": dg.MetadataValue.path(str(tarball.path)),
                **_stac_item(context, self.storage.root_path, tarball),
            }
        )

    def load_input(self, context: dg.InputContext) -> Tarball:
        return verify_tarball(self._path(self._name(context.upstream_output)))
