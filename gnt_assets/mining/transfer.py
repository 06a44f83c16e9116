"""Copy a partition's packed tiles to the HPC target, verified and resumable (the seed's transfer worker).

Order per partition: the data file first, ``index.json`` last, so a reader on
the cluster never finds an index naming a file that is not there yet. Each
file is uploaded under a temporary name fixed by its content, so a copy cut
off half-way is continued from the size already on the target (appending the
rest) rather than started again; its size and SHA-256 are then taken *on the
target* (SFTP: ``sha256sum`` run over SSH, so nothing is read back over the
network; other targets read the copy back), and only then is it renamed into
place. A resumed copy that does not verify is copied once more from scratch.
A re-run skips files whose target copy already has the right size and
checksum. Nothing is ever deleted from the source; superseded data files on the
target are removed only after the new index is verified there.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from upath import UPath

from gnt_assets.core.errors import TransientError
from gnt_assets.core.packed_tensors import DATA_PREFIX, INDEX_NAME, PackedIndex

BLOCK = 4 * 1024 * 1024


class TransferError(TransientError):
    """The target refused, lost or corrupted a copy; the message names partition and file."""


@dataclass(frozen=True)
class CopiedFile:
    name: str
    bytes: int
    sha256: str
    copied: bool  # False: the target already had an identical copy
    sent: int = 0  # bytes sent this time (less than ``bytes`` when a partial copy was continued)


def file_digest(path: UPath) -> tuple[int, str]:
    """Size and SHA-256 of a file on any file system, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def _remote_sha256(path: UPath) -> str | None:
    """SHA-256 computed by the target host itself (sshfs targets), or None where it cannot run commands."""
    execute = getattr(path.fs, "execute", None)
    if execute is None:
        return None
    try:
        return execute(f"sha256sum -- {shlex.quote(path.path)}").stdout.split()[0]
    except Exception:  # an SFTP-only account (no shell): read the copy back instead
        return None


def target_digest(path: UPath) -> tuple[int, str] | None:
    """Size and SHA-256 of a file on the target, computed there when the target can."""
    try:
        if not path.exists():
            return None
        remote = _remote_sha256(path)
        return (path.stat().st_size, remote) if remote else file_digest(path)
    except FileNotFoundError:
        return None


def partition_target(root: UPath, country: str, year: str) -> UPath:
    return root / country / str(year)


def _append_from(source: UPath, temp: UPath, start: int) -> int:
    """Write ``source`` from byte ``start`` on to the end of ``temp``; returns the bytes sent."""
    sent = 0
    with source.open("rb") as reader, temp.open("ab" if start else "wb") as writer:
        reader.seek(start)
        while block := reader.read(BLOCK):
            writer.write(block)
            sent += len(block)
    return sent


def _copy_verified(source: UPath, target: UPath, expected: tuple[int, str], label: str) -> int:
    """Copy (or continue copying) ``source`` to ``target`` through a temporary file; returns the bytes sent."""
    temp = target.parent / f".tmp-{target.name}.{expected[1][:16]}"  # the same name when the copy is resumed
    try:
        partial = temp.stat().st_size if temp.exists() else 0
        start = partial if partial <= expected[0] else 0
        sent = _append_from(source, temp, start)
        found = target_digest(temp)
        if found != expected and start:  # the partial copy was not a prefix of this file
            sent += _append_from(source, temp, 0)
            found = target_digest(temp)
        if found != expected:
            temp.unlink()
            raise TransferError(f"{label}: target copy {temp} has size/SHA-256 {found}, expected {expected}")
        if target.exists():
            target.unlink()  # SFTP rename does not overwrite
        temp.fs.mv(temp.path, target.path)
        return sent
    except TransferError:
        raise
    except Exception as error:  # the partial copy stays for the next attempt to continue
        raise TransferError(f"{label}: copying {source.name} to {target} failed ({type(error).__name__}: {error})") from error


def transfer_partition(index: PackedIndex, target_dir: UPath, label: str) -> list[CopiedFile]:
    """Copy ``index``'s data file and index to ``target_dir``; returns what was copied or already there."""
    sources = [index.data_path, index.folder / INDEX_NAME]
    expected = {index.data_file: (index.data_bytes, index.sha256), INDEX_NAME: file_digest(sources[1])}
    actual_data = file_digest(sources[0])
    if actual_data != expected[index.data_file]:
        raise TransferError(f"{label}: source {index.data_path} does not match its index (size/SHA-256 {actual_data}); re-materialize the tiles")
    try:
        target_dir.mkdir(parents=True, exist_ok=True)
    except Exception as error:
        raise TransferError(f"{label}: cannot create {target_dir} ({type(error).__name__}: {error})") from error
    results = []
    for source in sources:
        target = target_dir / source.name
        wanted = expected[source.name]
        if target_digest(target) == wanted:
            results.append(CopiedFile(source.name, wanted[0], wanted[1], copied=False))
            continue
        sent = _copy_verified(source, target, wanted, label)
        results.append(CopiedFile(source.name, wanted[0], wanted[1], copied=True, sent=sent))
    for stale in target_dir.iterdir():
        if (stale.name.startswith(DATA_PREFIX) and stale.name != index.data_file) or stale.name.startswith(".tmp-"):
            stale.unlink()
    return results


def transfer_problems(index: PackedIndex, target_dir: UPath) -> list[str]:
    """What is missing or different on the target for this partition (the janitor's view)."""
    problems = []
    for source in (index.data_path, index.folder / INDEX_NAME):
        wanted = (index.data_bytes, index.sha256) if source == index.data_path else file_digest(source)
        found = target_digest(target_dir / source.name)
        if found is None:
            problems.append(f"{target_dir / source.name}: missing on the target")
        elif found != wanted:
            problems.append(f"{target_dir / source.name}: size/SHA-256 {found[0]}/{found[1][:12]} differs from the source {wanted[0]}/{wanted[1][:12]}")
    return problems
