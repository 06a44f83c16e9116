"""The HPC transfer target (DESIGN section 2): any fsspec URL the training cluster can read.

``sftp://user@login-node:22/scratch/gnt`` (sshfs), ``s3://bucket/prefix`` (s3fs)
or a plain folder. The local profile copies to ``{storage root}/hpc_target``;
tests also serve the ``sftp://`` path from ``gnt_assets.mining.local.sftp_server.sftp_server``.
Secrets (password, SSH private key text, S3 keys) come from ``EnvVar``s and never appear in metadata.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
from pydantic import Field
from upath import UPath

from gnt_assets.resources.storage import s3_options


class HPCTargetResource(dg.ConfigurableResource):
    """Where ``mining_hpc_transfer`` copies each partition's packed tiles and index."""

    url: str = Field(description="Target root: sftp://user@host:port/path, s3://bucket/prefix, or a local folder.")
    password: str | None = Field(default=None, description="SFTP password; use EnvVar('GNT_HPC_PASSWORD').")
    client_keys: list[str] | None = Field(default=None, description="SFTP private key files.")
    private_key: str | None = Field(default=None, description="SFTP private key text (OpenSSH/PEM); use EnvVar('GNT_HPC_SSH_KEY').")
    verify_host_key: bool = Field(default=True, description="Check the SFTP server's key against ~/.ssh/known_hosts.")
    endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint for s3:// targets.")
    key: str | None = Field(default=None, description="S3 access key id; use EnvVar.")
    secret: str | None = Field(default=None, description="S3 secret key; use EnvVar.")

    def storage_options(self) -> dict[str, Any]:
        scheme = urlsplit(self.url).scheme
        options: dict[str, Any] = {}
        if scheme in ("sftp", "ssh"):
            if self.password:
                options["password"] = self.password
            keys: list[Any] = list(self.client_keys or [])
            if self.private_key:
                import asyncssh

                keys.append(asyncssh.import_private_key(self.private_key))  # held in memory, never written to disk
            if keys:
                options["client_keys"] = keys
            if not self.verify_host_key:
                options["known_hosts"] = None
        elif scheme == "s3":
            options = s3_options(self.endpoint_url, self.key, self.secret)
        return options

    def root_path(self) -> UPath:
        if "://" in self.url and not self.url.startswith("file://"):
            return UPath(self.url, **self.storage_options())
        return UPath(self.url).absolute()

    def describe(self) -> str:
        """The URL as shown in metadata: no password, even if one was put in the URL."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.username:
            netloc = f"{parts.username}@{netloc}"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", "")) if parts.scheme else self.url
