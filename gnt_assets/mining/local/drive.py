"""The local Drive: a folder under the storage root, with stable file ids (sha256 of the name).

Listings carry each file's MD5 as Drive's ``md5Checksum`` does, and a download is
kept only if it matches (the same check as on Drive).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from upath import UPath

from gnt_assets.mining.drive import DriveFile, verify_md5
from gnt_assets.mining.resources import DriveResource


def file_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:28]


def _md5(path: UPath) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


class LocalDrive(DriveResource):
    root: str
    page_size: int = 2  # small pages so every listing walks several pages, as on Drive

    def _folder(self) -> UPath:
        return UPath(self.root) / "local" / "drive" / self.folder

    def _pages(self, prefix: str):
        names = sorted(p.name for p in self._folder().glob(f"{prefix}*")) if self._folder().exists() else []
        for start in range(0, len(names), self.page_size):
            yield names[start : start + self.page_size]

    def list_files(self, prefix: str) -> list[DriveFile]:
        folder = self._folder()
        return [DriveFile(file_id(n), n, (folder / n).stat().st_size, _md5(folder / n)) for page in self._pages(prefix) for n in page]

    def _by_id(self, fid: str) -> UPath:
        for path in self._folder().glob("*"):
            if file_id(path.name) == fid:
                return path
        raise FileNotFoundError(f"local Drive has no file {fid}")

    def download(self, file: DriveFile, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        with self._by_id(file.file_id).open("rb") as source, open(part, "wb") as out:
            shutil.copyfileobj(source, out)
        verify_md5(file, part)
        part.replace(dest)

    def delete(self, fid: str) -> None:
        self._by_id(fid).unlink()
