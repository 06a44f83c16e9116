"""tar_io_manager: streamed tarballs with sidecars, through Dagster, on disk and on S3.

The crash test kills a writer subprocess at 20 random points of its stream and
shows a reader sees the old tarball or the new one, never a torn one, with the
matching sidecar; killed in the instant between the two publishes, the mismatch
is detected by verification and repaired by the next write.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap

import dagster as dg
import pytest
from upath import UPath

from gnt_assets.core.tarball import TarballError, TarMember, md5_line, verify_tarball
from gnt_assets.io_managers.tar import TarballContents, TarIOManager
from gnt_assets.resources.storage import StorageResource

WRITER = textwrap.dedent(
    """
    # A fork server: imports once, then forks one writer per spec line read from stdin
    # and prints the writer's exit status, so 20 kills do not pay 20 interpreter starts.
    import io, json, os, signal, sys
    import s3fs  # imported before forking, so each writer starts warm
    from upath import UPath
    from gnt_assets.core import tarball
    from gnt_assets.core.tarball import TarMember

    def run(spec):
        read = 0

        class Killing(io.BytesIO):
            # A member source that SIGKILLs its own process once the stream passes kill_after bytes.
            def read(self, n=-1):
                nonlocal read
                data = super().read(n)
                read += len(data)
                if read >= spec["kill_after"]:
                    os.kill(os.getpid(), signal.SIGKILL)
                return data

        def member(i):
            data = bytes([(spec["seed"] * 31 + i) % 251]) * spec["member_size"]
            return TarMember(arcname=f"files/m{i}.tif", size=len(data), open=lambda: Killing(data))

        if spec.get("kill_before_sidecar"):  # the instant between publishing the tarball and its sidecar
            tarball.atomic_write_text = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        tarball.write_tarball(UPath(spec["url"], **spec["options"]), [member(i) for i in range(spec["members"])])

    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            try:
                run(json.loads(line))
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        print(-os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status), flush=True)
    """
)
MEMBERS, MEMBER_SIZE = 4, 300_000


class Writers:
    """The fork server as a context manager: ``write(...)`` returns the writer's exit code."""

    def __init__(self, url: str, options: dict):
        self.url, self.options = url, options

    def __enter__(self):
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        self.process = subprocess.Popen([sys.executable, "-c", WRITER], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        return self

    def write(self, seed: int, kill_after: int, kill_before_sidecar: bool = False) -> int:
        spec = {"url": self.url, "options": self.options, "seed": seed, "kill_after": kill_after, "members": MEMBERS,
                "member_size": MEMBER_SIZE, "kill_before_sidecar": kill_before_sidecar}
        self.process.stdin.write(json.dumps(spec) + "\n")
        self.process.stdin.flush()
        return int(self.process.stdout.readline())

    def __exit__(self, *exc):
        self.process.stdin.close()
        self.process.wait(timeout=60)


def _crash_points(path: UPath, options: dict) -> None:
    total = MEMBERS * MEMBER_SIZE
    with Writers(str(path), options) as writers:
        assert writers.write(seed=1, kill_after=10**12) == 0
        versions = [path.read_bytes()]
        rng = random.Random(20261123)
        for attempt in range(20):
            seed = 2 + attempt
            kill_after = rng.randrange(1, total + 1)
            assert writers.write(seed=seed, kill_after=kill_after) == -signal.SIGKILL
            data, sidecar = path.read_bytes(), (path.parent / f"{path.name}.md5").read_text()
            assert data in versions, f"torn tarball after a kill at byte {kill_after}"
            assert sidecar == md5_line(hashlib.md5(data).hexdigest(), path.name)
            # Now and then a write completes, so the "old" version changes.
            if attempt % 5 == 4:
                assert writers.write(seed=seed, kill_after=10**12) == 0
                versions = [path.read_bytes()]
        # Killed between the two publishes: the new tarball beside the old sidecar is detected, and a rerun repairs it.
        assert writers.write(seed=99, kill_after=10**12, kill_before_sidecar=True) == -signal.SIGKILL
        assert path.read_bytes() not in versions
        with pytest.raises(TarballError, match="does not match"):
            verify_tarball(path)
        assert writers.write(seed=99, kill_after=10**12) == 0
        assert verify_tarball(path).md5 == hashlib.md5(path.read_bytes()).hexdigest()
    leftovers = [p.name for p in path.parent.iterdir() if p.name not in (path.name, f"{path.name}.md5")]
    assert all(name.startswith(".tmp-") for name in leftovers)


def test_killed_writer_never_leaves_a_torn_tarball_on_disk(tmp_path):
    _crash_points(UPath(tmp_path) / "tar-store" / "src.tar", {})


def test_killed_writer_never_leaves_a_torn_tarball_on_s3(s3_root, s3_endpoint):
    _crash_points(s3_root / "tar-store" / "src.tar", s3_endpoint.storage_options())


def _tar_assets():
    source = dg.DynamicPartitionsDefinition(name="tar_test_source")

    @dg.asset(partitions_def=source, io_manager_key="tar_io_manager")
    def bundle(context) -> TarballContents:
        data = context.partition_key.encode() * 1000
        member = TarMember(arcname="files/a.tif", size=len(data), open=lambda: __import__("io").BytesIO(data))
        return TarballContents(name=context.partition_key, members=(member,))

    @dg.asset(partitions_def=source)
    def bundle_md5(bundle) -> str:
        return bundle.md5

    return source, [bundle, bundle_md5]


def test_tar_io_manager_on_disk(tmp_path, instance):
    _through_dagster(StorageResource(root=str(UPath(tmp_path) / "storage")), instance)


def test_tar_io_manager_on_s3(s3_root, s3_endpoint, instance):
    _through_dagster(StorageResource(root=str(s3_root), endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing"), instance)


def _through_dagster(storage: StorageResource, instance) -> None:
    source, assets = _tar_assets()
    instance.add_dynamic_partitions(source.name, ["alpha"])
    resources = {"tar_io_manager": TarIOManager(storage=storage)}
    first = dg.materialize(assets, partition_key="alpha", instance=instance, resources=resources)
    written = storage.path("tar-store", "alpha.tar").read_bytes()
    md5 = hashlib.md5(written).hexdigest()
    assert first.output_for_node("bundle_md5") == md5
    metadata = first.asset_materializations_for_node("bundle")[0].metadata
    assert metadata["md5"].value == md5 and metadata["files"].value == 2
    dg.materialize(assets, partition_key="alpha", instance=instance, resources=resources)
    assert storage.path("tar-store", "alpha.tar").read_bytes() == written


def test_a_write_failing_midway_on_s3_leaves_the_old_tarball_and_sidecar(s3_root):
    """fsspec commits an object on close even when the write failed: the new bytes go to temporary
    keys first, so the published tarball and its .md5 stay the old, verified ones."""
    import io

    from gnt_assets.core.tarball import write_tarball

    path = s3_root / "tar-store" / "src.tar"
    good = [TarMember(arcname=f"files/m{i}.tif", size=400_000, open=lambda i=i: io.BytesIO(bytes([i]) * 400_000)) for i in range(3)]
    first = write_tarball(path, good)
    old_bytes, old_sidecar = path.read_bytes(), (path.parent / "src.tar.md5").read_text()

    class Failing(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 200_000:
                raise OSError("disk read failed halfway through a member")
            return super().read(n)

    broken = [*good[:2], TarMember(arcname="files/m2.tif", size=400_000, open=lambda: Failing(b"\x07" * 400_000))]
    with pytest.raises(OSError, match="halfway"):
        write_tarball(path, broken)
    assert path.read_bytes() == old_bytes and (path.parent / "src.tar.md5").read_text() == old_sidecar
    assert verify_tarball(path).md5 == first.md5
    assert sorted(p.name for p in path.parent.iterdir()) == ["src.tar", "src.tar.md5"]  # no temporary key left
