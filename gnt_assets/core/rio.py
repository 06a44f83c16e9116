"""Opening rasters by path or URL, so GDAL reads only the blocks a window needs.

``rasterio.open(fileobj)`` copies the whole file into a MemoryFile (rasterio 1.4). A local path is
handed to GDAL as is; an S3 URL goes to GDAL's own ``/vsis3/`` client, configured from the path's
storage options (endpoint, credentials) for the block being read; any other fsspec URL goes through
``opener=``. S3 does not use the opener because rasterio's Python file openers are not thread-safe
(rasterio#3636): tiles read on a Dask worker's threads aborted the process."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from urllib.parse import urlsplit

import rasterio
from upath import UPath

from gnt_assets.core.atomic import is_local


def s3_env(storage_options: dict) -> rasterio.Env:
    """A GDAL environment for ``/vsis3/`` equal to s3fs ``storage_options``: credentials through a rasterio
    ``AWSSession`` (rasterio refuses them as config options), the endpoint of an S3-compatible store as
    config options; unset ones are left to GDAL's own defaults (environment variables, instance credentials)."""
    from rasterio.session import AWSSession

    client = storage_options.get("client_kwargs") or {}
    endpoint = storage_options.get("endpoint_url") or client.get("endpoint_url")
    options = {}
    if endpoint:
        url = urlsplit(endpoint)
        options |= {"AWS_S3_ENDPOINT": url.netloc, "AWS_HTTPS": "YES" if url.scheme == "https" else "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}
    if not (storage_options.get("key") or storage_options.get("anon") or client.get("region_name")):
        return rasterio.Env(**options)
    session = AWSSession(aws_access_key_id=storage_options.get("key"), aws_secret_access_key=storage_options.get("secret"),
                         aws_session_token=storage_options.get("token"), region_name=client.get("region_name"),
                         aws_unsigned=bool(storage_options.get("anon")))
    return rasterio.Env(session=session, **options)


@contextlib.contextmanager
def open_raster(path: str | UPath, cache_mb: int | None = None) -> Iterator[rasterio.DatasetReader]:
    """The raster at ``path`` (local path or fsspec URL), open for reading by GDAL's own I/O while the block runs.
    ``cache_mb``: GDAL's block cache meanwhile (its default is 5 % of the machine's memory, which a long
    windowed read fills: part of a task's memory limit must bound it)."""
    if cache_mb is not None:
        with rasterio.Env(GDAL_CACHEMAX=int(cache_mb)), open_raster(path) as src:
            yield src
        return
    upath = UPath(path)
    if is_local(upath):
        with rasterio.open(upath.path) as src:
            yield src
    elif upath.protocol in ("s3", "s3a"):
        with s3_env(upath.storage_options), rasterio.open(f"/vsis3/{upath.path}") as src:
            yield src
    else:
        with rasterio.open(str(upath), opener=upath.fs) as src:
            yield src
