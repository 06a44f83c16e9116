"""Google Drive v3 calls for export files (``google-api-python-client``), kept apart from Dagster.

Earth Engine shards large exports into ``{prefix}-{row}-{col}.tif`` files, so
listing is by name prefix over every page (the seed took the first file only).
Downloads resume from the bytes already on disk after a failed chunk, and a copy
is kept only if its MD5 matches Drive's ``md5Checksum``. Every call passes
``supportsAllDrives`` (and lists with ``includeItemsFromAllDrives``, limited to one
shared drive by ``corpora='drive'``/``driveId`` when given): without them Drive
answers as if files in shared drives did not exist.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from googleapiclient.http import MediaIoBaseDownload

from gnt_assets.core.errors import TransientError


@dataclass(frozen=True)
class DriveFile:
    file_id: str
    name: str
    size: int
    md5: str = ""  # Drive's md5Checksum of the stored bytes


class ChecksumMismatch(TransientError, OSError):
    """A downloaded copy whose MD5 differs from Drive's ``md5Checksum``; the copy was discarded.
    Transient: bytes damaged in transit come right on the next download (an OSError, as any failed read)."""


def list_scope(shared_drive_id: str | None) -> dict[str, Any]:
    """files.list parameters that include shared drives (one of them only, if its id is given)."""
    scope: dict[str, Any] = {"supportsAllDrives": True, "includeItemsFromAllDrives": True}
    if shared_drive_id:
        scope.update(corpora="drive", driveId=shared_drive_id)
    return scope


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def is_copy_of(file: DriveFile, path: Path) -> bool:
    """The local file has the size and MD5 Drive lists (a check skipped for a value Drive did not give)."""
    if not path.exists() or (file.size and path.stat().st_size != file.size):
        return False
    return not file.md5 or file_md5(path) == file.md5


def verify_md5(file: DriveFile, part: Path) -> None:
    """Raise ``ChecksumMismatch`` (deleting ``part``) unless the download's MD5 is Drive's."""
    if file.md5 and (found := file_md5(part)) != file.md5:
        part.unlink()
        raise ChecksumMismatch(f"Drive file {file.name} ({file.file_id}): downloaded MD5 {found}, Drive lists {file.md5}; "
                               "the copy was discarded and the file kept on Drive")


def folder_ids(service: Any, folder: str, shared_drive_id: str | None = None) -> list[str]:
    """Ids of the Drive folders with this name (Earth Engine exports into a folder by name)."""
    query = f"mimeType = 'application/vnd.google-apps.folder' and name = '{folder}' and trashed = false"
    response = service.files().list(q=query, fields="files(id)", **list_scope(shared_drive_id)).execute()
    return [f["id"] for f in response.get("files", [])]


def list_export_files(service: Any, prefix: str, parents: list[str] | None = None, page_size: int = 100,
                      shared_drive_id: str | None = None) -> list[DriveFile]:
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
            .list(q=query, pageSize=page_size, pageToken=token, fields="nextPageToken, files(id, name, size, md5Checksum)",
                  **list_scope(shared_drive_id))
            .execute()
        )
        files += [
            DriveFile(f["id"], f["name"], int(f.get("size", 0)), f.get("md5Checksum", ""))
            for f in response.get("files", []) if f["name"].startswith(prefix)
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
    """Download to ``dest + '.part'`` chunk by chunk, resuming after errors; rename when size and MD5 match."""
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        offset = part.stat().st_size if part.exists() else 0
        with open(part, "ab") as out:
            downloader = _Resumable(out, service.files().get_media(fileId=file.file_id, supportsAllDrives=True), chunk_size, offset)
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
    verify_md5(file, part)
    part.replace(dest)


def delete_file(service: Any, file_id: str) -> None:
    service.files().delete(fileId=file_id, supportsAllDrives=True).execute()


