"""Copy a partition's packed tiles to the HPC target, verified and resumable (the seed's transfer worker).

Order per partition: the data file first, ``index.json`` last, so a reader on
the cluster never finds an index naming a file that is not there yet. Each
file is uploaded under a temporary name, its size and SHA-256 are read back
*from the target*, and only then is it renamed into place. A re-run skips files
whose target copy already has the right size and checksum, so an interrupted
transfer resumes where it stopped. Nothing is ever deleted from the source;
superseded data files on the target are removed only after the new index is
verified there.
"""

from __future__ import annotations

import hashlib
import uuid
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


def file_digest(path: UPath) -> tuple[int, str]:
    """Size and SHA-256 of a file on any file system, streamed."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def target_digest(path: UPath) -> tuple[int, str] | None:
    try:
        return file_digest(path) if path.exists() else None
    except FileNotFoundError:
        return None


def partition_target(root: UPath, country: str, year: str) -> UPath:
    return root / country / str(year)


def _copy_verified(source: UPath, target: UPath, expected: tuple[int, str], label: str) -> None:
    temp = target.parent / f".tmp-{target.name}.{uuid.uuid4().hex[:12]}"
    try:
        with source.open("rb") as reader, temp.open("wb") as writer:
            while block := reader.read(BLOCK):
                writer.write(block)
        found = target_digest(temp)
        if found != expected:
            raise TransferError(f"{label}: target copy {temp} has size/SHA-256 {found}, expected {expected}")
        if target.exists():
            target.unlink()  # SFTP rename does not overwrite
        temp.fs.mv(temp.path, target.path)
    except TransferError:
        raise
    except Exception as error:
        raise TransferError(f"{label}: copying {source.name} to {target} failed ({type(error).__name__}: {error})") from error
    finally:
        try:
            if temp.exists():
                temp.unlink()
        except Exception:  # the target may be gone; the source is untouched either way
            pass


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
        _copy_verified(source, target, wanted, label)
        results.append(CopiedFile(source.name, wanted[0], wanted[1], copied=True))
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
