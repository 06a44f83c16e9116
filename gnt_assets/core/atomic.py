"""Atomic writes on local disk and on object stores.

A crash must leave either the old state or the new one. On a local file system
that is "write a temporary name beside the target, flush, rename". Object
stores have no rename, but a single object PUT only becomes visible once
complete, so there a write goes straight to its key and multi-file outputs
publish a small manifest last (readers treat a folder without its manifest as
absent).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from typing import IO

from upath import UPath

TEMP_PREFIX = ".tmp-"


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def temp_sibling(path: UPath) -> UPath:
    """A hidden, unique name in the same folder, so the final rename stays on one device."""
    return path.parent / f"{TEMP_PREFIX}{path.name}.{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def atomic_open(path: UPath, mode: str = "wb", *, durable: bool = True) -> Iterator[IO]:
    """Open ``path`` for writing so that readers see the file only once it is complete.

    ``durable`` also flushes it to disk before the rename (survives power loss, not just a
    killed process); pointless for a record of data that was itself written without fsync.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes; got mode {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(path):
        with path.open(mode) as handle:
            yield handle
        return
    temp = temp_sibling(path)
    try:
        with open(temp.path, mode) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(temp.path, path.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temp.path)
        raise


def atomic_write_bytes(path: UPath, data: bytes, *, durable: bool = True) -> None:
    with atomic_open(path, "wb", durable=durable) as handle:
        handle.write(data)


def atomic_write_text(path: UPath, text: str, *, durable: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), durable=durable)


@contextlib.contextmanager
def atomic_directory(path: UPath) -> Iterator[UPath]:
    """Build a folder under a temporary name and swap it into place in one rename.

    On object stores the folder is written in place; callers mark completion with
    a manifest written last (see ``atomic_open``).
    """
    if not is_local(path):
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(path)
    temp.mkdir()
    try:
        yield temp
        old = None
        if path.exists():
            old = temp_sibling(path)
            os.replace(path.path, old.path)
        os.replace(temp.path, path.path)
        if old is not None:
            shutil.rmtree(old.path, ignore_errors=True)
    except BaseException:
        shutil.rmtree(temp.path, ignore_errors=True)
        raise


@contextlib.contextmanager
def local_lock(path: UPath) -> Iterator[None]:
    """Writers on one machine take turns on ``path`` (a ``.lock`` file beside it).

    For metadata changes that have no safe concurrent form on local disk; object
    stores get no lock (use a transactional backend there).
    """
    if not is_local(path):
        yield
        return
    lock_path = path.parent / f"{path.name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path.path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_stale_temps(folder: UPath) -> list[UPath]:
    """Delete temporaries a crashed writer left behind; returns what was removed."""
    removed = []
    if not folder.exists():
        return removed
    for child in folder.iterdir():
        if child.name.startswith(TEMP_PREFIX):
            if child.is_dir():
                child.fs.rm(child.path, recursive=True)
            else:
                child.unlink()
            removed.append(child)
    return removed
