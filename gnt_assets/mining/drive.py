"""Google Drive v3 calls for export files (``google-api-python-client``), kept apart from Dagster.

Earth Engine shards large exports into ``{prefix}-{row}-{col}.tif`` files, so
listing is by name prefix over every page (the seed took the first file only).
Downloads resume from the bytes already on disk after a failed chunk.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from googleapiclient.http import MediaIoBaseDownload


@dataclass(frozen=True)
class DriveFile:
    file_id: str
    name: str
    size: int


def folder_ids(service: Any, folder: str) -> list[str]:
    """Ids of the Drive folders with this name (Earth Engine exports into a folder by name)."""
    query = f"mimeType = 'application/vnd.google-apps.folder' and name = '{folder}' and trashed = false"
    return [f["id"] for f in service.files().list(q=query, fields="files(id)").execute().get("files", [])]


def list_export_files(service: Any, prefix: str, parents: list[str] | None = None, page_size: int = 100) -> list[DriveFile]:
    """Every non-trashed file whose name starts with ``prefix``, across all pages; only inside the
    folders ``parents`` (from ``folder_ids``) if given, so none when that list is empty."""
    query = f"name contains '{prefix}' and trashed = false"
    if parents is not None:
        if not parents:
            return []
        query += " and (" + " or ".join(f"'{i}' in parents" for i in parents) + ")"
    files: list[DriveFile] = []
    token = None
    while True:
        response = (
            service.files()
            .list(q=query, pageSize=page_size, pageToken=token, fields="nextPageToken, files(id, name, size)")
            .execute()
        )
        files += [
            DriveFile(f["id"], f["name"], int(f.get("size", 0))) for f in response.get("files", []) if f["name"].startswith(prefix)
        ]
        token = response.get("nextPageToken")
        if not token:
            return sorted(files, key=lambda f: f.name)


class _Resumable(MediaIoBaseDownload):
    """MediaIoBaseDownload starting at a byte offset (the part already downloaded)."""

    def __init__(self, fd, request, chunksize, offset):
        super().__init__(fd, request, chunksize=chunksize)
        self._progress = offset


def download_file(service: Any, file: DriveFile, dest: Path, chunk_size: int = 4 * 2**20, retries: int = 3) -> None:
    """Download to ``dest + '.part'`` chunk by chunk, resuming after errors; rename when the size matches."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        with open(part, "ab") as out:
            downloader = _Resumable(out, service.files().get_media(fileId=file.file_id), chunk_size, offset)
            try:
                done = False
                while not done:
                    _, done = downloader.next_chunk()
                break
            except Exception as error:  # a 5xx or dropped connection: keep the bytes, resume
                failures += 1
                if failures > retries:
                    raise OSError(f"Drive file {file.name} ({file.file_id}): download failed {failures} times: {error}") from error
    if file.size and part.stat().st_size != file.size:
        raise OSError(f"Drive file {file.name}: downloaded {part.stat().st_size} bytes, Drive lists {file.size}")
    part.replace(dest)


def delete_file(service: Any, file_id: str) -> None:
    service.files().delete(fileId=file_id).execute()


