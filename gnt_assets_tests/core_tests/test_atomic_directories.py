"""Folders published whole: a local swap killed between its renames is restored (old or new, never
lost), clean-ups leave live writers' temporaries alone, and on object stores a folder is a version
prefix that one pointer object publishes, the old version deleted only after the switch."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from upath import UPath

from gnt_assets.core import atomic
from gnt_assets.core.atomic import (
    NEW_PREFIX,
    OLD_PREFIX,
    TEMP_PREFIX,
    AtomicWriteError,
    atomic_directory,
    atomic_open,
    pointer_path,
    remove_stale_temps,
    resolve_directory,
)

WORKTREE = Path(__file__).resolve().parents[2]
FILES = ("features.pt", "labels.pt", "metadata.json")

# Writes "new" into every file of the folder, SIGKILLing itself at the chosen os.replace call
# (1: build temp -> .tmp-new-, 2: target -> .tmp-old-, 3: .tmp-new- -> target).
KILLED_SWAP = """
import os, signal, sys
from upath import UPath
from gnt_assets.core.atomic import atomic_directory
target, kill_at = UPath(sys.argv[1]), int(sys.argv[2])
real, calls = os.replace, []
def replace(source, destination):
    calls.append(source)
    if len(calls) == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    real(source, destination)
os.replace = replace
with atomic_directory(target) as work:
    for name in sys.argv[-1].split(","):
        (work / name).write_text("new")
"""

# On an object store: uploads a version, then dies before the pointer is switched.
KILLED_BEFORE_POINTER = """
import json, os, signal, sys
from upath import UPath
from gnt_assets.core import atomic
target = UPath(sys.argv[1], **json.loads(sys.argv[2]))
atomic.atomic_write_text = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
with atomic.atomic_directory(target) as work:
    for name in sys.argv[-1].split(","):
        (work / name).write_text("new")
"""


def write(target: UPath, text: str) -> None:
    with atomic_directory(target) as building:
        for name in FILES:
            (building / name).write_text(text)


def contents(folder: UPath) -> set[str]:
    return {(folder / name).read_text() for name in FILES}


def temps(folder: UPath) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX))


def run(script: str, *args: str) -> int:
    return subprocess.run([sys.executable, "-c", script, *args, ",".join(FILES)], cwd=WORKTREE, env={"PYTHONPATH": str(WORKTREE), "PATH": ""},
                          timeout=60).returncode


@pytest.mark.parametrize("reader", ["resolve_directory", "remove_stale_temps"])
@pytest.mark.parametrize("kill_at", [1, 2, 3])
def test_a_swap_killed_at_any_rename_leaves_the_old_or_the_new_folder(tmp_path, kill_at, reader):
    parent = UPath(tmp_path)
    target = parent / "3_4"
    write(target, "old")
    assert run(KILLED_SWAP, str(target), str(kill_at)) == -signal.SIGKILL
    assert temps(parent)
    if kill_at == 3:  # between the two renames: no target at all until a reader or writer recovers it
        assert not target.exists()
        assert {n[: len(NEW_PREFIX)] for n in temps(parent)} == {NEW_PREFIX, OLD_PREFIX}
    if reader == "resolve_directory":
        assert resolve_directory(target) == target
    else:
        remove_stale_temps(parent)
        assert temps(parent) == []
    assert contents(target) == ({"new"} if kill_at == 3 else {"old"})
    write(target, "again")  # the next writer clears what is left of the killed swap
    assert contents(target) == {"again"}
    assert not [n for n in temps(parent) if n.startswith((NEW_PREFIX, OLD_PREFIX))]


def test_a_swap_failing_between_its_renames_keeps_the_old_folder(tmp_path, monkeypatch):
    target = UPath(tmp_path) / "tile"
    write(target, "old")
    real, calls = atomic.os.replace, []

    def replace(source, destination):
        calls.append(source)
        if len(calls) == 3:
            raise OSError("device went away")
        real(source, destination)

    monkeypatch.setattr(atomic.os, "replace", replace)
    with pytest.raises(OSError, match="device went away"):
        write(target, "new")
    monkeypatch.undo()
    assert contents(target) == {"old"} and temps(UPath(tmp_path)) == []


def test_clean_up_leaves_the_temporaries_of_live_writers(tmp_path):
    folder = UPath(tmp_path)
    dead = folder / f"{TEMP_PREFIX}part.bin.0123456789ab"
    dead.write_bytes(b"left by a killed writer")
    with atomic_directory(folder / "tile") as building, atomic_open(folder / "part.bin") as handle:
        (building / "features.pt").write_text("f")
        handle.write(b"half")
        assert [p.name for p in remove_stale_temps(folder)] == [dead.name]
        assert building.exists() and len(temps(folder)) == 2
    assert (folder / "tile" / "features.pt").read_text() == "f" and (folder / "part.bin").read_bytes() == b"half"
    assert temps(folder) == []


def test_object_store_folder_is_a_version_published_by_its_pointer(s3_root):
    target = s3_root / "tile"
    write(target, "v1")
    first = resolve_directory(target)
    assert first.name.startswith("tile.v-") and contents(first) == {"v1"}
    write(target, "v2")
    second = resolve_directory(target)
    assert contents(second) == {"v2"}
    assert json.loads(pointer_path(target).read_text())["files"] == len(FILES)
    s3_root.fs.invalidate_cache()
    assert sorted(p.name for p in s3_root.iterdir()) == sorted(["tile.pointer", second.name])  # v1 went after the switch

    with pytest.raises(RuntimeError), atomic_directory(target) as building:
        (building / "features.pt").write_text("half of v3")
        raise RuntimeError("killed")
    with pytest.raises(AtomicWriteError, match="holds no files"), atomic_directory(target):
        pass
    s3_root.fs.invalidate_cache()
    assert resolve_directory(target) == second and contents(second) == {"v2"}
    assert sorted(p.name for p in s3_root.iterdir()) == sorted(["tile.pointer", second.name])


def test_object_store_writer_killed_before_the_pointer_switch_leaves_the_old_version(s3_root, s3_endpoint, monkeypatch):
    target = s3_root / "tile"
    write(target, "old")
    published = resolve_directory(target)
    assert run(KILLED_BEFORE_POINTER, str(target), json.dumps(s3_endpoint.storage_options())) == -signal.SIGKILL
    s3_root.fs.invalidate_cache()
    orphans = [p.name for p in s3_root.iterdir() if p.name.startswith("tile.v-") and p.name != published.name]
    assert len(orphans) == 1  # uploaded whole, never published
    assert resolve_directory(target) == published and contents(published) == {"old"}

    write(target, "next")  # a young unpublished version may be a live writer's: kept
    s3_root.fs.invalidate_cache()
    assert orphans[0] in [p.name for p in s3_root.iterdir()]
    monkeypatch.setattr(atomic, "STALE_AFTER_S", 0)
    write(target, "last")  # once it is older than STALE_AFTER_S it is a dead writer's: removed
    s3_root.fs.invalidate_cache()
    assert sorted(p.name for p in s3_root.iterdir()) == sorted(["tile.pointer", resolve_directory(target).name])
    assert contents(resolve_directory(target)) == {"last"}


def test_without_flock_writes_go_ahead_and_clean_ups_judge_temporaries_by_age(tmp_path, monkeypatch):
    def no_flock(fd, flags):
        raise OSError(errno.ENOLCK, "no locks on this mount")

    monkeypatch.setattr(atomic.fcntl, "flock", no_flock)
    folder = UPath(tmp_path)
    young, old = folder / f"{TEMP_PREFIX}a.bin.0123456789ab", folder / f"{TEMP_PREFIX}b.bin.0123456789ab"
    young.write_bytes(b"maybe live")
    old.write_bytes(b"dead")
    os.utime(old.path, (time.time() - atomic.STALE_AFTER_S - 60,) * 2)
    with atomic_open(folder / "part.bin") as handle:
        handle.write(b"whole")
    write(folder / "tile", "v1")
    assert [p.name for p in remove_stale_temps(folder)] == [old.name]
    assert (folder / "part.bin").read_bytes() == b"whole" and contents(folder / "tile") == {"v1"} and young.exists()


@pytest.mark.parametrize("where", ["local", "object store"])
def test_a_resumable_build_keeps_its_work_when_it_fails_and_takes_it_up_again(tmp_path, where, request):
    root = UPath(tmp_path) if where == "local" else request.getfixturevalue("s3_root")
    target = root / "tiles.zarr"
    with pytest.raises(RuntimeError), atomic_directory(target, resume="abc123") as building:
        (building / "tile-1").write_text("done before the kill")
        raise RuntimeError("killed")
    assert not target.exists() or where == "object store"
    if where == "local":  # a second builder of the same token meanwhile is refused, to be retried
        assert remove_stale_temps(root) == []  # clean-ups leave the kept work alone
        with pytest.raises(RuntimeError, match="first builder fails"), atomic_directory(target, resume="abc123") as again:
            with pytest.raises(atomic.TransientError, match="another run"), atomic_directory(target, resume="abc123"):
                pass
            raise RuntimeError("first builder fails too")
        assert again.exists() and not target.exists()
    with atomic_directory(target, resume="abc123") as building:
        assert (building / "tile-1").read_text() == "done before the kill"  # the same folder, taken up
        (building / "tile-2").write_text("done now")
    root.fs.invalidate_cache()
    published = resolve_directory(target)
    assert sorted(p.name for p in published.iterdir()) == ["tile-1", "tile-2"]
    with atomic_directory(target, resume="abc123") as building:  # built and published: the next build starts afresh
        assert not building.exists() or list(building.iterdir()) == []
        (building / "tile-3").write_text("rebuilt")
    root.fs.invalidate_cache()
    assert [p.name for p in resolve_directory(target).iterdir()] == ["tile-3"]
    leftovers = [p.name for p in root.iterdir() if p.name not in ("tiles.zarr", "tiles.zarr.pointer")]
    assert leftovers == [] if where == "local" else len(leftovers) == 1  # the published version only
