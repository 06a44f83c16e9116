"""The one storage root every asset writes below (DESIGN section 3)."""

from __future__ import annotations

import uuid

import dagster as dg
from pydantic import Field
from upath import UPath

from gnt_assets.core.errors import InputError
from gnt_assets.core.keys import check_key


class StorageConfigError(InputError, RuntimeError):
    pass


def s3_options(endpoint_url: str | None, key: str | None, secret: str | None) -> dict:
    """s3fs storage options for an S3-compatible endpoint and credentials, leaving out what is unset."""
    options: dict = {}
    if endpoint_url:
        options["client_kwargs"] = {"endpoint_url": endpoint_url}
    if key:
        options["key"] = key
    if secret:
        options["secret"] = secret
    return options


class StorageResource(dg.ConfigurableResource):
    """A root folder or fsspec URL (``./data``, ``s3://bucket/gnt``, ``az://...``).

    Credentials are passed as fsspec storage options and should come from ``EnvVar``s.
    """

    root: str = Field(default="./data", description="Storage root; set with GNT_STORAGE_ROOT.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint (for MinIO, moto, ...).")
    key: str | None = Field(default=None, description="Access key id; use EnvVar.")
    secret: str | None = Field(default=None, description="Secret access key; use EnvVar.")
    anon: bool = False
    block_size: int | None = Field(
        default=None,
        description="s3fs default_block_size in bytes: the part size of multipart uploads (at least 5 MiB) and the read "
        "block; unset: s3fs's 50 MiB.",
    )

    def storage_options(self) -> dict:
        """fsspec options for a remote root; empty for a local folder."""
        options = s3_options(self.endpoint_url, self.key, self.secret)
        if self.anon:
            options["anon"] = True
        if self.block_size:
            options["default_block_size"] = self.block_size
        return options

    @property
    def root_path(self) -> UPath:
        if "://" in self.root and not self.root.startswith("file://"):
            return UPath(self.root, **self.storage_options())
        return UPath(self.root).absolute()

    def path(self, *parts: str) -> UPath:
        """A path below the root; every part is checked so a key can never climb out."""
        for part in parts:
            for segment in str(part).split("/"):
                check_key(segment, what="storage path segment")
        return self.root_path.joinpath(*parts)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        root = self.root_path
        probe = root / f".gnt-write-probe-{uuid.uuid4().hex[:8]}"
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"ok")
            probe.unlink()
        except Exception as error:
            raise StorageConfigError(
                f"storage root {self.root!r} cannot be written ({type(error).__name__}: {error}); "
                "set GNT_STORAGE_ROOT to a writable folder or fsspec URL"
            ) from error
