"""Unpacking downloaded zip and 7z archives safely.

Every member is checked before anything is written: no absolute paths, no
``..``, no symlinks or hardlinks, total size and compression ratio under the
limits (a zip bomb fails before it inflates). Extraction goes to a temporary
folder that is renamed into place once every member's size is verified.
"""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import py7zr
import py7zr.exceptions
import rasterio
from rasterio.errors import RasterioIOError

from gnt_assets.core.errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff", ".asc", ".xyz", ".txt", ".grd", ".img")  # .txt: XYZ points, as upstream lists them


class ArchiveError(InputError):
    """An archive member that is unsafe or an archive over the limits."""


@dataclass(frozen=True)
class Member:
    name: str
    size: int
    compressed: int
    is_link: bool


def is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path) or py7zr.is_7zfile(path)


def _zip_members(path: Path) -> list[Member]:
    with zipfile.ZipFile(path) as archive:
        return [
            Member(i.filename, i.file_size, i.compress_size, stat.S_ISLNK(i.external_attr >> 16))
            for i in archive.infolist()
            if not i.is_dir()
        ]


def _7z_members(path: Path) -> list[Member]:
    with py7zr.SevenZipFile(path) as archive:
        compressed = path.stat().st_size
        infos = [i for i in archive.list() if not i.is_directory]
        return [Member(i.filename, i.uncompressed, compressed // max(len(infos), 1), bool(i.is_symlink)) for i in infos]


def members(path: Path) -> list[Member]:
    return _zip_members(path) if zipfile.is_zipfile(path) else _7z_members(path)


def check_members(path: Path, found: list[Member], *, max_total_bytes: int, max_ratio: float) -> None:
    """Raise ArchiveError naming the archive and the first unsafe member."""
    for member in found:
        parts = PurePosixPath(member.name.replace("\\", "/"))
        if parts.is_absolute() or member.name[1:3] == ":/" or ".." in parts.parts:
            raise ArchiveError(f"{path.name}: member {member.name!r} escapes the archive (absolute path or '..')")
        if member.is_link:
            raise ArchiveError(f"{path.name}: member {member.name!r} is a link; links are refused")
    total = sum(m.size for m in found)
    if total > max_total_bytes:
        raise ArchiveError(f"{path.name}: unpacks to {total} bytes, over the limit of {max_total_bytes}")
    ratio = total / max(path.stat().st_size, 1)
    if ratio > max_ratio:
        raise ArchiveError(f"{path.name}: compression ratio {ratio:.0f}:1 is over the limit of {max_ratio:.0f}:1 (zip bomb?)")


def extract(path: Path, dest: Path, *, max_total_bytes: int, max_ratio: float) -> list[Path]:
    """Unpack ``path`` into ``dest`` after checking every member; returns the rasters inside."""
    found = members(path)
    check_members(path, found, max_total_bytes=max_total_bytes, max_ratio=max_ratio)
    temp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            archive.extractall(temp)
    else:
        with py7zr.SevenZipFile(path) as archive:
            archive.extractall(temp)
    for member in found:
        written = temp / member.name
        if not written.is_file() or written.is_symlink() or written.stat().st_size != member.size:
            raise ArchiveError(f"{path.name}: member {member.name!r} did not extract to its listed {member.size} bytes")
    shutil.rmtree(dest, ignore_errors=True)
    temp.rename(dest)
    return rasters_in(dest)


def check_opens(path: Path) -> None:
    """Raise ArchiveError unless ``path`` is an archive whose members pass their CRCs or a raster
    GDAL opens: a download is only kept once it does (run before anything is deleted)."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise ArchiveError(f"{path.name}: the zip does not read ({error})") from error
        if bad is not None:
            raise ArchiveError(f"{path.name}: member {bad!r} fails its CRC")
    elif py7zr.is_7zfile(path):
        try:
            with py7zr.SevenZipFile(path) as archive:
                bad = archive.testzip()
        except (py7zr.exceptions.ArchiveError, OSError, EOFError) as error:
            raise ArchiveError(f"{path.name}: the 7z archive does not read ({error})") from error
        if bad is not None:
            raise ArchiveError(f"{path.name}: member {bad!r} fails its CRC")
    elif is_raster_name(path):
        try:
            with rasterio.open(path) as dataset:
                dataset.read(1, window=((0, min(1, dataset.height)), (0, min(1, dataset.width))))
        except RasterioIOError as error:
            raise ArchiveError(f"{path.name}: GDAL cannot read it as a raster ({error})") from error
    else:
        raise ArchiveError(f"{path.name} is neither a zip/7z archive nor a raster ({'/'.join(RASTER_SUFFIXES)})")


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def is_xyz_text(path: Path) -> bool:
    """A ``.txt`` is a raster only when it holds XYZ points (its first line three numbers), not a readme."""
    with open(path, "rb") as handle:
        head = handle.read(4096).decode("latin-1")
    lines = [line for line in head.splitlines() if line.strip()]
    if not lines:
        return False
    first = re.split(r"[\s,;]+", lines[0].strip())
    if not all(_NUMBER.fullmatch(v) for v in first):  # a header line (X Y Z) may come first
        first = re.split(r"[\s,;]+", lines[1].strip()) if len(lines) > 1 else []
    return len(first) >= 3 and all(_NUMBER.fullmatch(v) for v in first)


def is_raster_name(path: Path) -> bool:
    suffix = path.suffix.lower()
    return suffix in RASTER_SUFFIXES and (suffix != ".txt" or is_xyz_text(path))


def rasters_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and is_raster_name(p))
