"""Atomic writes on local disk and on object stores.

A crash must leave either the old state or the new one. On a local file system
that is "write a temporary name beside the target, flush, rename". Object
stores have no rename, but a single object PUT only becomes visible once
complete: a file goes straight to its key, and a folder is uploaded to a new
version prefix ``{name}.v-<time>-<id>/`` and then published by rewriting one
small pointer object ``{name}.pointer`` (one PUT); readers go through
``resolve_directory``.

Locally, a writer holds an ``flock`` on each temporary it builds for as long as
it builds it, so a clean-up running beside it (``remove_stale_temps``) removes
only the temporaries of writers that died. A folder swap is two renames; the
complete new folder is first renamed ``.tmp-new-…`` and the folder it replaces
becomes ``.tmp-old-…``, all under a lock on the parent folder, so a crash at any
point leaves names from which ``recover_directory`` restores the target.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import random
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from typing import IO

from upath import UPath

from gnt_assets.core.errors import InputError, TransientError

TEMP_PREFIX = ".tmp-"
NEW_PREFIX = ".tmp-new-"  # a complete folder about to be swapped in
OLD_PREFIX = ".tmp-old-"  # the folder it replaces, removed once the swap is done
POINTER_SUFFIX = ".pointer"
POINTER_FORMAT = "gnt-directory-pointer/1"
VERSION_MARK = ".v-"
# An object-store temporary or unpublished version older than this belongs to a writer that died
# (object stores have no locks to ask); writes of one file or folder take far less.
STALE_AFTER_S = 6 * 3600
_SUFFIX = re.compile(r"\.[0-9a-f]{12}$")


class AtomicWriteError(InputError, RuntimeError):
    """A folder that cannot be published (nothing was written into it), or a pointer that names no version:
    retrying cannot help, so it is an input error."""


def is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def located(url: str, like: UPath | None) -> UPath:
    """A path kept as text, reopened with ``like``'s storage options when both share a protocol.

    Text drops a UPath's options, so a raster under an S3-compatible storage root would otherwise
    be looked for on AWS; a URL of any other protocol keeps its own defaults."""
    path = UPath(url)
    if like is None or is_local(path) or path.protocol != like.protocol:
        return path
    return UPath(url, **like.storage_options)


def temp_sibling(path: UPath, prefix: str = TEMP_PREFIX) -> UPath:
    """A hidden, unique name in the same folder, so the final rename stays on one device."""
    return path.parent / f"{prefix}{path.name}.{uuid.uuid4().hex[:12]}"


def _temp_target(name: str, prefix: str) -> str | None:
    """The target name a temporary of ``temp_sibling(…, prefix)`` was made for."""
    if not name.startswith(prefix) or not _SUFFIX.search(name):
        return None
    return name[len(prefix) : -13]


def _flock(fd: int, flags: int = fcntl.LOCK_EX) -> bool:
    """Take an ``flock``; False where the file system has none (some NFS or Lustre mounts): the write
    goes ahead unlocked and clean-ups judge its temporaries by age there."""
    try:
        fcntl.flock(fd, flags)
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            return False
        raise
    return True


def _same_file(fd: int, path: str) -> bool:
    """Whether ``path`` still names the file ``fd`` has open (a clean-up may have removed it before we locked it)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def atomic_open(path: UPath, mode: str = "wb", *, durable: bool = True,
                hold: contextlib.ExitStack | None = None) -> Iterator[IO]:
    """Open ``path`` for writing so that readers see the file only once it is complete.

    ``durable`` also flushes it to disk before the rename (survives power loss, not just a
    killed process); pointless for a record of data that was itself written without fsync.
    ``hold`` keeps the file's lock after the rename until that stack closes, so clean-ups
    (``remove_stale_temps``, packed tensors' unreferenced files) leave it alone meanwhile.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes; got mode {mode!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not is_local(path):
        with path.open(mode) as handle:
            yield handle
        return
    while True:
        temp = temp_sibling(path)
        handle = open(temp.path, mode)  # noqa: SIM115 (closed below, after the lock is handed on)
        _flock(handle.fileno())
        if _same_file(handle.fileno(), temp.path):
            break
        handle.close()  # removed by a clean-up between creating and locking it: take a new name
    try:
        with handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
            if hold is not None:
                hold.callback(os.close, os.dup(handle.fileno()))  # the lock lives while any copy is open
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


def pointer_path(path: UPath) -> UPath:
    """The object naming the published version of folder ``path`` on an object store."""
    return path.parent / f"{path.name}{POINTER_SUFFIX}"


@contextlib.contextmanager
def atomic_directory(path: UPath, *, resume: str | None = None) -> Iterator[UPath]:
    """Build a folder aside and publish it whole; read it back through ``resolve_directory``.

    Locally: built under a locked temporary name, then swapped in by renames that
    ``recover_directory`` can complete after a crash. On object stores: built under a new
    version prefix; once it lists files, the pointer is rewritten to name it (one PUT) and
    only then is the previous version deleted. A failure leaves the previous folder.

    ``resume``: a token naming what is built (for example a content hash): the folder is built
    under a name derived from it, kept when the build fails or is killed, and taken up again by
    the next build with the same token, so a long build resumes instead of restarting. Clean-ups
    of temporaries leave such folders alone; a second builder with the same token meanwhile is
    refused locally (a ``TransientError``: retried once the first is done).
    """
    if not is_local(path):
        yield from _object_store_directory(path, resume)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume is not None:
        temp, fd = _resume_folder(path, resume)
    else:
        while True:
            temp = temp_sibling(path)
            temp.mkdir()
            fd = os.open(temp.path, os.O_RDONLY | os.O_DIRECTORY)
            _flock(fd)
            if _same_file(fd, temp.path):
                break
            os.close(fd)
    try:
        yield temp
        with folder_lock(path.parent):
            _recover_locked(path)  # a swap an earlier writer left half-done comes first
            new = temp_sibling(path, NEW_PREFIX)
            os.replace(temp.path, new.path)
            try:
                old = None
                if os.path.lexists(path.path):
                    old = temp_sibling(path, OLD_PREFIX)
                    os.replace(path.path, old.path)
                os.replace(new.path, path.path)
                if old is not None:
                    shutil.rmtree(old.path, ignore_errors=True)
            except BaseException:
                _recover_locked(path, prefer=OLD_PREFIX)  # this write failed: the old folder stays
                raise
    except BaseException:
        if resume is None:
            shutil.rmtree(temp.path, ignore_errors=True)
        raise
    finally:
        os.close(fd)


RESUME_PREFIX = ".resume-"  # a resumable build in progress (kept across attempts; see atomic_directory)


def _resume_folder(path: UPath, token: str) -> tuple[UPath, int]:
    if not re.fullmatch(r"[0-9A-Za-z_-]{1,64}", token):
        raise ValueError(f"resume token {token!r}: letters, digits, '_' and '-' only")
    folder = path.parent / f"{RESUME_PREFIX}{path.name}.{token}"
    folder.mkdir(exist_ok=True)
    fd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as error:
        os.close(fd)
        raise TransientError(f"{path}: another run is building it ({folder.name}); try again once it is done") from error
    return folder, fd


def _object_store_directory(path: UPath, resume: str | None = None) -> Iterator[UPath]:
    version = path.parent / f"{path.name}{VERSION_MARK}{time.time_ns():016x}-{uuid.uuid4().hex[:8]}"
    if resume is not None and _published_version(path) != f"{path.name}{VERSION_MARK}resume-{resume}":
        # a version named by its token (never taken for a crashed writer's: no time stamp), kept on failure;
        # once published, the next build of the same token starts a fresh version instead of writing into it
        version = path.parent / f"{path.name}{VERSION_MARK}resume-{resume}"
    try:
        yield version
        version.fs.invalidate_cache()
        files = version.fs.find(version.path, detail=True)
        if not files:
            raise AtomicWriteError(f"{path}: the new version {version.name} holds no files; nothing was published")
        previous = _published_version(path)
        record = {"format": POINTER_FORMAT, "version": version.name, "files": len(files),
                  "bytes": sum(int(info.get("size") or 0) for info in files.values())}
        atomic_write_text(pointer_path(path), json.dumps(record))
        if _published_version(path) != version.name:  # a concurrent writer switched it after us: the last one wins
            version.fs.rm(version.path, recursive=True)
            return
    except BaseException:
        if "resume-" not in version.name:
            with contextlib.suppress(FileNotFoundError, OSError):
                version.fs.rm(version.path, recursive=True)
        raise
    # published: what the pointer named before (or a folder written in place by older code) can go
    stale = [path.parent / previous] if previous and previous != version.name else []
    for folder in stale + ([path] if path.fs.isdir(path.path) else []):
        with contextlib.suppress(FileNotFoundError, OSError):
            folder.fs.rm(folder.path, recursive=True)
    _remove_stale_versions(path, keep=version.name)


def _published_version(path: UPath) -> str | None:
    try:
        raw = json.loads(pointer_path(path).read_text())
    except FileNotFoundError:
        return None
    if not isinstance(raw, dict) or raw.get("format") != POINTER_FORMAT or not str(raw.get("version", "")).startswith(path.name + VERSION_MARK):
        raise AtomicWriteError(f"{pointer_path(path)} is not a {POINTER_FORMAT} pointer to a version of {path.name}")
    return raw["version"]


def _remove_stale_versions(path: UPath, keep: str) -> None:
    """Versions of crashed writers: unpublished and older than ``STALE_AFTER_S`` (a younger one may be live)."""
    oldest = time.time_ns() - STALE_AFTER_S * 10**9
    for found in path.fs.glob(f"{path.parent.path}/{path.name}{VERSION_MARK}*"):
        name = found.rstrip("/").rsplit("/", 1)[-1]
        stamp = name[len(path.name) + len(VERSION_MARK) :].split("-", 1)[0]
        if name != keep and re.fullmatch(r"[0-9a-f]{16}", stamp) and int(stamp, 16) < oldest:
            with contextlib.suppress(FileNotFoundError, OSError):
                path.fs.rm(found, recursive=True)


def resolve_directory(path: UPath) -> UPath:
    """Where the folder ``atomic_directory(path)`` published is read from.

    Locally the folder itself (first restored from a swap a crash interrupted); on object
    stores the version its pointer names, or ``path`` when there is no pointer.
    """
    if is_local(path):
        if not os.path.lexists(path.path):
            recover_directory(path)
        return path
    version = _published_version(path)
    return path if version is None else path.parent / version


def recover_directory(path: UPath) -> bool:
    """Finish a local folder swap a crash interrupted; True when the target was restored."""
    if not is_local(path) or not path.parent.exists():
        return False
    with folder_lock(path.parent):
        return _recover_locked(path)


def _recover_locked(path: UPath, prefer: str = NEW_PREFIX) -> bool:
    """Under the parent's lock every ``.tmp-new-``/``.tmp-old-`` name is a dead writer's: with no target,
    the complete new folder (or the old one, as ``prefer`` says, else the other) becomes the target;
    the rest is removed."""
    leftovers = {prefix: sorted(entry.path for entry in os.scandir(path.parent.path) if _temp_target(entry.name, prefix) == path.name)
                 for prefix in (NEW_PREFIX, OLD_PREFIX)}
    other = OLD_PREFIX if prefer == NEW_PREFIX else NEW_PREFIX
    candidates = leftovers[prefer] + leftovers[other]
    restored = False
    if candidates and not os.path.lexists(path.path):
        os.replace(candidates.pop(0), path.path)
        restored = True
    for leftover in candidates:
        shutil.rmtree(leftover, ignore_errors=True)
    return restored


@contextlib.contextmanager
def folder_lock(folder: UPath) -> Iterator[None]:
    """Writers on one machine take turns in ``folder``: an exclusive ``flock`` on the folder
    itself, so no lock file lands beside the outputs (none on object stores). Not reentrant:
    a second ``folder_lock`` on the same folder in one process waits for ever."""
    if not is_local(folder):
        yield
        return
    fd = os.open(folder.path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _flock(fd)
        yield
    finally:
        os.close(fd)


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


SWAP_ATTEMPTS = 50


def _lost_the_race(error: OSError) -> bool:
    """A conditional PUT refused because another writer changed the object first (HTTP 412)."""
    cause = error.__cause__ or error.__context__
    return getattr(cause, "response", {}).get("Error", {}).get("Code") == "PreconditionFailed"


def swap_object(path: UPath, update: Callable[[bytes | None], bytes | None], *, attempts: int = SWAP_ATTEMPTS) -> bytes | None:
    """Replace an object on an object store by ``update(its bytes, or None when absent)`` without losing a
    concurrent writer's change, where no lock reaches: a compare-and-swap. The ETag is read before the bytes,
    the PUT is conditional on it (``If-Match``, or ``If-None-Match: *`` for a new object), and when another
    writer got in first, ``update`` runs again on a fresh read. ``update`` returning None writes nothing.
    Returns the bytes as written, or as found when nothing was written."""
    fs = path.fs
    for attempt in range(attempts):
        try:
            etag = fs.info(path.path, refresh=True)["ETag"]  # before the read: a write between them fails the PUT
            current = fs.cat_file(path.path)
        except FileNotFoundError:
            etag, current = None, None
        new = update(current)
        if new is None:
            return current
        condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            fs.pipe_file(path.path, new, **condition)
            return new
        except FileExistsError:
            pass  # created by another writer since the read
        except OSError as error:
            if not _lost_the_race(error):
                raise
        time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
    raise TransientError(f"{path}: {attempts} writers in a row changed it while this one merged its change; try again")


def remove_if_unused(path: UPath) -> bool:
    """Remove a file or folder unless a live writer holds it: locally, unless it is locked
    (the check and the removal happen under its lock); on object stores (and file systems
    without ``flock``), only once it is older than ``STALE_AFTER_S``. True when it was removed."""
    if not is_local(path):
        try:
            info = path.fs.info(path.path)
        except FileNotFoundError:
            return False
        modified = info.get("LastModified") or info.get("mtime")
        if info.get("type") == "directory" or modified is None:
            return False  # a prefix has no age of its own
        stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
        if time.time() - stamp < STALE_AFTER_S:
            return False
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path)
        return True
    try:
        fd = os.open(path.path, os.O_RDONLY | (os.O_DIRECTORY if os.path.isdir(path.path) else 0))
    except FileNotFoundError:
        return False
    try:
        try:
            locked = _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        if not _same_file(fd, path.path) or (not locked and time.time() - os.fstat(fd).st_mtime < STALE_AFTER_S):
            return False
        if os.path.isdir(path.path):
            shutil.rmtree(path.path, ignore_errors=True)
        else:
            os.remove(path.path)
        return True
    finally:
        os.close(fd)


def remove_stale_temps(folder: UPath) -> list[UPath]:
    """Delete temporaries crashed writers left behind (live writers' are kept); a folder swap a
    crash interrupted is completed first. Returns what was removed."""
    removed: list[UPath] = []
    if not folder.exists():
        return removed
    children = list(folder.iterdir())
    if is_local(folder):
        targets = {_temp_target(c.name, p) for c in children for p in (NEW_PREFIX, OLD_PREFIX)} - {None}
        for target in sorted(targets):
            recover_directory(folder / target)
        children = list(folder.iterdir())
    for child in children:
        if child.name.startswith(TEMP_PREFIX) and remove_if_unused(child):
            removed.append(child)
    return removed
