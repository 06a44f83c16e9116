"""Writers killed mid-upload through the IO managers on S3 (moto): the payloads (about 12 MB) are larger than
the 5 MiB upload part size the storage is given, so s3fs really sends them as multipart uploads, and each
writer is SIGKILLed once moto holds an unfinished multipart upload with a part in it. The previous
output must still be whole and readable through the IO manager, and a retry must then succeed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import boto3
import dagster as dg
import numpy as np

from gnt_assets.core.packed_tensors import verify_packed
from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
from gnt_assets.io_managers.tar import TarIOManager, tarball_path
from gnt_assets.resources.storage import StorageResource

WORKTREE = Path(__file__).resolve().parents[2]
PART = 5 * 2**20  # S3's smallest part size
PAYLOAD = 12 * 10**6

WRITER = textwrap.dedent(
    """
    import io, json, sys, time
    from pathlib import Path
    import dagster as dg
    import numpy as np
    from gnt_assets.core.packed_tensors import TensorField, TensorPack
    from gnt_assets.core.tarball import TarMember
    from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
    from gnt_assets.io_managers.tar import TarballContents, TarIOManager
    from gnt_assets.resources.storage import StorageResource

    spec = json.loads(sys.argv[1])
    storage, value, hang_after = StorageResource(**spec["storage"]), spec["value"], spec["hang_after"]

    def hang():  # a writer stalled (and about to die) with part of its upload sent
        Path(spec["flag"]).touch()
        time.sleep(600)

    class Source(io.RawIOBase):
        def __init__(self):
            self.sent = 0
        def readable(self):
            return True
        def readinto(self, buffer):
            if hang_after is not None and self.sent >= hang_after:
                hang()
            n = min(len(buffer), 2**20, spec["size"] - self.sent)
            buffer[:n] = bytes([value]) * n
            self.sent += n
            return n

    class Records:  # the features array of a TensorPack, handed out in the writer's batches
        def __init__(self, array):
            self.array, self.dtype, self.shape = array, array.dtype, array.shape
        def __len__(self):
            return len(self.array)
        def __getitem__(self, rows):
            if hang_after is not None and rows.start * self.array[0].nbytes >= hang_after:
                hang()
            return self.array[rows]

    if spec["kind"] == "tar":
        member = TarMember("payload.bin", spec["size"], open=lambda: io.BufferedReader(Source()))
        manager = TarIOManager(storage=storage)
        output = TarballContents("payload", (member,))
    else:
        count = spec["size"] // (4 * 32 * 32 * 4)
        fields = (TensorField("features", "<f4", (4, 32, 32)),)
        manager = MmapTensorIOManager(storage=storage)
        output = TensorPack(fields, {"features": Records(np.full((count, 4, 32, 32), value, "<f4"))}, {"value": [value] * count}, {"value": value})

    @dg.asset(name="payload", io_manager_key="manager")
    def payload():
        return output

    dg.materialize([payload], resources={"manager": manager})
    """
)


def storage_for(s3_root, s3_endpoint) -> StorageResource:
    return StorageResource(root=str(s3_root), endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing", block_size=PART)


def write(kind: str, storage: StorageResource, value: int, flag: Path | None = None, hang_after: int | None = None) -> subprocess.Popen:
    spec = {"kind": kind, "storage": storage.model_dump(), "value": value, "size": PAYLOAD, "hang_after": hang_after, "flag": str(flag)}
    return subprocess.Popen([sys.executable, "-c", WRITER, json.dumps(spec)], cwd=WORKTREE,
                            env={**os.environ, "PYTHONPATH": str(WORKTREE)}, stderr=subprocess.PIPE, text=True)


def completed(process: subprocess.Popen) -> None:
    _, errors = process.communicate(timeout=120)
    assert process.returncode == 0, errors


def kill_mid_upload(process: subprocess.Popen, flag: Path, s3_endpoint, prefix: str) -> list[dict]:
    """SIGKILL the writer once it stalls with an unfinished multipart upload holding parts; returns those uploads."""
    client = boto3.client("s3", endpoint_url=s3_endpoint.endpoint_url, region_name="us-east-1")
    try:
        for _ in range(1200):
            if flag.exists() or process.poll() is not None:
                break
            time.sleep(0.05)
        assert flag.exists(), "the writer never stalled mid-upload"
        uploads = client.list_multipart_uploads(Bucket=s3_endpoint.bucket, Prefix=prefix).get("Uploads", [])
        for upload in uploads:
            upload["Parts"] = client.list_parts(Bucket=s3_endpoint.bucket, Key=upload["Key"], UploadId=upload["UploadId"]).get("Parts", [])
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    return uploads


def prefix_of(s3_root) -> str:
    return s3_root.path.split("/", 1)[1] + "/"


def test_tar_io_manager_killed_mid_multipart_upload_keeps_the_old_tarball(s3_root, s3_endpoint, tmp_path):
    storage = storage_for(s3_root, s3_endpoint)
    path, manager = tarball_path(storage, "payload"), TarIOManager(storage=storage)
    completed(write("tar", storage, value=1))
    old = load_payload(manager)

    uploads = kill_mid_upload(write("tar", storage, 2, tmp_path / "stalled", hang_after=8 * 2**20), tmp_path / "stalled",
                              s3_endpoint, prefix_of(s3_root))
    assert len(uploads) == 1 and uploads[0]["Parts"], uploads  # a real multipart upload, killed after its first part(s)
    assert uploads[0]["Key"].rsplit("/", 1)[-1].startswith(".tmp-payload.tar.")  # to a temporary key, never the tarball's

    path.fs.invalidate_cache()
    assert load_payload(manager) == old  # the previous tarball and sidecar, whole (re-hashed)
    assert old.size > PAYLOAD

    completed(write("tar", storage, value=2))
    new = load_payload(manager)
    assert new.md5 != old.md5 and new.size == old.size
    with path.open("rb") as handle:
        handle.seek(old.size // 2)
        assert handle.read(4) == bytes([2]) * 4


def load_payload(manager: dg.IOManager):
    """The asset's output as a downstream asset gets it."""
    context = dg.build_input_context(upstream_output=dg.build_output_context(asset_key=dg.AssetKey("payload")), asset_key=dg.AssetKey("payload"))
    return manager.load_input(context)


def test_mmap_io_manager_killed_mid_multipart_upload_keeps_the_old_tensors(s3_root, s3_endpoint, tmp_path):
    storage = storage_for(s3_root, s3_endpoint)
    completed(write("mmap", storage, value=1))
    old = load_payload(MmapTensorIOManager(storage=storage))
    assert old.data_bytes > PAYLOAD * 0.99 and verify_packed(old) == []

    uploads = kill_mid_upload(write("mmap", storage, 2, tmp_path / "stalled", hang_after=8 * 2**20), tmp_path / "stalled",
                              s3_endpoint, prefix_of(s3_root))
    assert len(uploads) == 1 and uploads[0]["Parts"], uploads
    assert uploads[0]["Key"].rsplit("/", 1)[-1].startswith("tensors-") and uploads[0]["Key"].endswith(".bin")

    old.folder.fs.invalidate_cache()
    again = load_payload(MmapTensorIOManager(storage=storage))
    assert again.data_file == old.data_file and verify_packed(again) == []
    assert np.all(again.read_records([0, again.count - 1])["features"] == 1.0)

    completed(write("mmap", storage, value=2))
    new = load_payload(MmapTensorIOManager(storage=storage))
    assert new.data_file != old.data_file and verify_packed(new) == []
    assert np.all(new.read_records([0, new.count - 1])["features"] == 2.0)
    new.folder.fs.invalidate_cache()
    assert not old.data_path.exists()  # the superseded data file went once the new index was published
