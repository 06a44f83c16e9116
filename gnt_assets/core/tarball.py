"""Plain, reproducible tarballs streamed to any storage with the MD5 computed while writing.

The same members in the same order always give the same bytes: fixed mtime,
owner and mode, so a re-run of a source publishes a byte-identical tarball and
``{name}.tar.md5`` (md5sum format, accepted by ``md5sum -c``). The tarball is
published atomically (temp + rename on disk; on object stores, which commit an
object on close even after a failed write, temporary keys checked and then
copied into place) and the sidecar only after it, so a reader never sees a
torn tarball.
Two files cannot be replaced in one step: a crash in the instant between the
two publishes leaves the new tarball beside the old sidecar, which
``verify_tarball`` (and ``md5sum -c``) reports and the next write repairs.
"""

from __future__ import annotations

import contextlib
import hashlib
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO

from upath import UPath

from gnt_assets.core.atomic import atomic_open, atomic_write_text, is_local, temp_sibling
from gnt_assets.core.errors import InputError

# 2000-01-01T00:00:00Z: a fixed member mtime makes tarballs reproducible.
MEMBER_MTIME = 946684800
CHUNK = 1 << 20


class TarballError(InputError):
    """A tarball that cannot be written or does not match its checksum."""


@dataclass(frozen=True)
class TarMember:
    """One file in the tarball: its name inside, its size and how to open its bytes."""

    arcname: str
    size: int
    open: Callable[[], IO[bytes]]

    @classmethod
    def from_path(cls, arcname: str, path: UPath) -> TarMember:
        return cls(arcname=arcname, size=int(path.stat().st_size), open=lambda: path.open("rb"))


@dataclass(frozen=True)
class Tarball:
    path: UPath
    md5: str
    size: int
    members: tuple[str, ...]

    @property
    def md5_path(self) -> UPath:
        return md5_path(self.path)


class _HashingWriter:
    """A write-only stream that hashes and counts every byte on its way to ``target``."""

    def __init__(self, target: IO[bytes]):
        self.target = target
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        self.target.write(data)
        return len(data)


def md5_path(tar_path: UPath) -> UPath:
    return tar_path.parent / f"{tar_path.name}.md5"


def md5_line(md5: str, tar_name: str) -> str:
    """The md5sum line: hash, two spaces, file name."""
    return f"{md5}  {tar_name}\n"


def _check_members(members: list[TarMember]) -> None:
    seen = set()
    for member in members:
        name = member.arcname
        if not name or name.startswith("/") or ".." in name.split("/"):
            raise TarballError(f"tar member name {name!r} is empty, absolute or climbs out with '..'")
        if name in seen:
            raise TarballError(f"tar member {name!r} appears twice")
        seen.add(name)


def _member_info(member: TarMember) -> tarfile.TarInfo:
    info = tarfile.TarInfo(member.arcname)
    info.size = member.size
    info.mtime = MEMBER_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class _SizedReader:
    """Reads exactly ``size`` bytes and fails if the member changed since it was listed."""

    def __init__(self, handle: IO[bytes], member: TarMember):
        self.handle, self.member, self.left = handle, member, member.size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self.handle.read(n)
        self.left -= len(data)
        if len(data) < n:
            raise TarballError(f"tar member {self.member.arcname!r} is shorter than its listed {self.member.size} bytes")
        return data


def _stream(handle: IO[bytes], members: list[TarMember]) -> _HashingWriter:
    writer = _HashingWriter(handle)
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
        for member in members:
            with member.open() as source:
                tar.addfile(_member_info(member), _SizedReader(source, member))
                if source.read(1):  # else the tarball would silently hold a truncated file
                    raise TarballError(f"tar member {member.arcname!r} grew beyond its listed {member.size} bytes")
    return writer


def _write_on_object_store(path: UPath, members: list[TarMember]) -> _HashingWriter:
    """Object stores commit a file when it is closed, also when the write failed halfway, so the
    tarball and its sidecar go to temporary keys, are checked (sizes), and only then copied into
    place (server-side copies); a failed write deletes its temporary keys and leaves the old objects."""
    temp, temp_md5 = temp_sibling(path), temp_sibling(md5_path(path))
    try:
        with temp.open("wb") as handle:  # a failure inside still commits this temporary key; finally deletes it
            writer = _stream(handle, members)
        stored = int(temp.fs.info(temp.path)["size"])
        if stored != writer.size:
            raise TarballError(f"tarball {path.name}: the store holds {stored} bytes of the {writer.size} written")
        line = md5_line(writer.md5.hexdigest(), path.name)
        temp_md5.write_text(line)
        if temp_md5.read_text() != line:
            raise TarballError(f"{md5_path(path).name}: the stored checksum line does not read back")
        path.fs.copy(temp.path, path.path)
        atomic_write_text(md5_path(path), line)  # one PUT of the verified line, after the tarball
        return writer
    finally:
        for leftover in (temp, temp_md5):
            with contextlib.suppress(FileNotFoundError, OSError):
                leftover.fs.rm(leftover.path)


def write_tarball(path: UPath, members: Iterable[TarMember]) -> Tarball:
    """Stream ``members`` (in the given order) into ``path`` and publish ``path.md5`` after it."""
    members = list(members)
    _check_members(members)
    if is_local(path):
        with atomic_open(path, "wb") as handle:
            writer = _stream(handle, members)
        atomic_write_text(md5_path(path), md5_line(writer.md5.hexdigest(), path.name))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = _write_on_object_store(path, members)
    return Tarball(path=path, md5=writer.md5.hexdigest(), size=writer.size, members=tuple(m.arcname for m in members))


def stored_md5(path: UPath) -> tuple[str, int]:
    """The MD5 from the sidecar and the tarball's size, without reading the tarball."""
    sidecar = md5_path(path)
    if not path.exists() or not sidecar.exists():
        raise TarballError(f"tarball {path} or its checksum {sidecar.name} is missing")
    expected, _, name = sidecar.read_text().rstrip("\n").partition("  ")
    if name != path.name or len(expected) != 32:
        raise TarballError(f"{sidecar.name} is not an md5sum line for {path.name}")
    return expected, int(path.stat().st_size)


def file_md5(path: UPath) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_tarball(path: UPath) -> Tarball:
    """Re-hash the tarball, compare it with its sidecar and list its members."""
    sidecar = md5_path(path)
    if not path.exists() or not sidecar.exists():
        raise TarballError(f"tarball {path} or its checksum {sidecar.name} is missing")
    line = sidecar.read_text()
    expected, _, name = line.rstrip("\n").partition("  ")
    if name != path.name or len(expected) != 32:
        raise TarballError(f"{sidecar.name}: {line!r} is not an md5sum line for {path.name}")
    actual = file_md5(path)
    if actual != expected:
        raise TarballError(f"tarball {path.name}: MD5 {actual} does not match {sidecar.name} ({expected})")
    with path.open("rb") as handle, tarfile.open(fileobj=handle, mode="r|") as tar:
        names = tuple(info.name for info in tar)
    return Tarball(path=path, md5=actual, size=int(path.stat().st_size), members=names)
