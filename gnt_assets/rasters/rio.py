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


def gdal_s3_options(storage_options: dict) -> dict[str, str]:
    """GDAL configuration options for ``/vsis3/`` equal to s3fs ``storage_options``; unset ones
    are left to GDAL's own defaults (environment variables, instance credentials)."""
    options = {}
    client = storage_options.get("client_kwargs") or {}
    endpoint = storage_options.get("endpoint_url") or client.get("endpoint_url")
    if endpoint:
        url = urlsplit(endpoint)
        options |= {"AWS_S3_ENDPOINT": url.netloc, "AWS_HTTPS": "YES" if url.scheme == "https" else "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}
    if storage_options.get("key"):
        options["AWS_ACCESS_KEY_ID"] = storage_options["key"]
    if storage_options.get("secret"):
        options["AWS_SECRET_ACCESS_KEY"] = storage_options["secret"]
    if client.get("region_name"):
        options["AWS_REGION"] = client["region_name"]
    if storage_options.get("anon"):
        options["AWS_NO_SIGN_REQUEST"] = "YES"
    return options


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
        with rasterio.Env(**gdal_s3_options(upath.storage_options)), rasterio.open(f"/vsis3/{upath.path}") as src:
            yield src
    else:
        with rasterio.open(str(upath), opener=upath.fs) as src:
            yield src
