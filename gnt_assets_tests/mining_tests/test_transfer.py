"""HPC transfer to a local folder, a real SFTP server on loopback and the loopback S3 server."""

from __future__ import annotations

import numpy as np
import pytest
from upath import UPath

from gnt_assets.core.packed_tensors import INDEX_NAME, TensorField, open_packed, write_packed
from gnt_assets.mining.hpc import HPCTargetResource
from gnt_assets.mining.local.sftp_server import sftp_server
from gnt_assets.mining.transfer import TransferError, file_digest, transfer_partition, transfer_problems

FIELDS = (TensorField("features", "<f4", (7, 64, 64)), TensorField("labels", "|u1", (1, 64, 64)))


def publish(folder: UPath, count: int, value: float):
    arrays = {"features": np.full((count, 7, 64, 64), value, "<f4"), "labels": np.ones((count, 1, 64, 64), np.uint8)}
    write_packed(folder, FIELDS, arrays, {"tile_ix": list(range(count))})
    return open_packed(folder)


def exercise(source_root: UPath, target_dir: UPath) -> None:
    index = publish(source_root / "ZAF" / "2020", 12, 1.0)
    first = transfer_partition(index, target_dir, "ZAF|2020")
    assert [f.copied for f in first] == [True, True] and first[-1].name == INDEX_NAME
    assert transfer_problems(index, target_dir) == []
    assert file_digest(target_dir / index.data_file) == (index.data_bytes, index.sha256)
    # Re-run: nothing to copy.
    assert [f.copied for f in transfer_partition(index, target_dir, "ZAF|2020")] == [False, False]
    # A corrupted target copy is found and only that file is copied again.
    with (target_dir / index.data_file).open("wb") as handle:
        handle.write(b"x" * index.data_bytes)
    assert "differs from the source" in transfer_problems(index, target_dir)[0]
    assert [f.copied for f in transfer_partition(index, target_dir, "ZAF|2020")] == [True, False]
    # A new version replaces the old data file on the target once its index is there.
    newer = publish(source_root / "ZAF" / "2020", 5, 2.0)
    transfer_partition(newer, target_dir, "ZAF|2020")
    assert sorted(p.name for p in target_dir.iterdir()) == sorted([INDEX_NAME, newer.data_file])
    assert transfer_problems(newer, target_dir) == []


def test_local_folder_target(tmp_path):
    target = HPCTargetResource(url=str(tmp_path / "hpc")).root_path()
    exercise(UPath(tmp_path) / "src", target / "ZAF" / "2020")


def test_sftp_target_through_sshfs(tmp_path):
    (tmp_path / "remote").mkdir()
    with sftp_server(str(tmp_path / "remote")) as endpoint:
        resource = HPCTargetResource(url=endpoint.url("/scratch/gnt"), password=endpoint.password, verify_host_key=False)
        assert resource.describe() == f"sftp://gnt@127.0.0.1:{endpoint.port}/scratch/gnt"
        exercise(UPath(tmp_path) / "src", resource.root_path() / "ZAF" / "2020")
    landed = sorted(p.name for p in (tmp_path / "remote" / "scratch" / "gnt" / "ZAF" / "2020").iterdir())
    assert INDEX_NAME in landed and len(landed) == 2


def test_s3_target(tmp_path, s3_endpoint, s3_root):
    resource = HPCTargetResource(url=str(s3_root), endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing")
    exercise(UPath(tmp_path) / "src", resource.root_path() / "ZAF" / "2020")


def test_target_refusing_writes_fails_naming_partition_and_keeps_source(tmp_path):
    (tmp_path / "remote").mkdir()
    index = publish(UPath(tmp_path) / "src", 3, 1.0)
    with sftp_server(str(tmp_path / "remote"), read_only=True) as endpoint:
        target = HPCTargetResource(url=endpoint.url("/x"), password=endpoint.password, verify_host_key=False).root_path()
        with pytest.raises(TransferError, match=r"ZAF\|2021"):
            transfer_partition(index, target / "ZAF" / "2021", "ZAF|2021")
    assert open_packed(index.folder).sha256 == index.sha256 and file_digest(index.data_path)[1] == index.sha256


def test_target_vanishing_mid_copy_then_resume(tmp_path):
    (tmp_path / "remote").mkdir()
    index = publish(UPath(tmp_path) / "src", 40, 3.0)
    with sftp_server(str(tmp_path / "remote"), drop_after_bytes=index.data_bytes // 3) as endpoint:
        target = HPCTargetResource(url=endpoint.url("/x"), password=endpoint.password, verify_host_key=False).root_path()
        with pytest.raises(TransferError, match=r"ZAF\|2020: copying tensors-"):
            transfer_partition(index, target / "ZAF" / "2020", "ZAF|2020")
    landed = tmp_path / "remote" / "x" / "ZAF" / "2020"
    assert not (landed / INDEX_NAME).exists() and not (landed / index.data_file).exists()  # nothing presented as complete
    with sftp_server(str(tmp_path / "remote")) as endpoint:
        target = HPCTargetResource(url=endpoint.url("/x"), password=endpoint.password, verify_host_key=False).root_path()
        transfer_partition(index, target / "ZAF" / "2020", "ZAF|2020")
        assert transfer_problems(index, target / "ZAF" / "2020") == []
    assert sorted(p.name for p in landed.iterdir()) == sorted([INDEX_NAME, index.data_file])


def test_target_settings_keep_secrets_out_of_metadata(monkeypatch, tmp_path):
    from gnt_assets.mining.definitions import resource_set

    resource = HPCTargetResource(url="sftp://alice:hunter2@login.hpc.example:2222/scratch/gnt", password="pw", verify_host_key=False)
    assert resource.describe() == "sftp://alice@login.hpc.example:2222/scratch/gnt"
    assert resource.storage_options() == {"password": "pw", "known_hosts": None}
    s3 = HPCTargetResource(url="s3://bucket/gnt", endpoint_url="http://127.0.0.1:9", key="k", secret="s")
    assert s3.storage_options() == {"client_kwargs": {"endpoint_url": "http://127.0.0.1:9"}, "key": "k", "secret": "s"}
    monkeypatch.setenv("GNT_STORAGE_ROOT", str(tmp_path))
    monkeypatch.delenv("GNT_HPC_TARGET_URL", raising=False)
    assert resource_set("local")["hpc"].url == f"{tmp_path}/hpc_target"
    monkeypatch.setenv("GNT_HPC_TARGET_URL", "sftp://bob@hpc/x")
    monkeypatch.setenv("GNT_HPC_PASSWORD", "secret")
    cloud = resource_set("cloud")["hpc"].process_config_and_initialize()  # EnvVars resolve at run time
    assert cloud.describe() == "sftp://bob@hpc/x" and cloud.password == "secret"


def test_sftp_target_with_a_private_key_from_an_environment_variable(monkeypatch, tmp_path):
    """The cloud profile's SSH key comes as text from GNT_HPC_SSH_KEY: no password, no key file on disk."""
    import asyncssh

    from gnt_assets.mining.definitions import resource_set

    key = asyncssh.generate_private_key("ssh-ed25519")
    (tmp_path / "remote").mkdir()
    with sftp_server(str(tmp_path / "remote"), authorized_key=key.export_public_key().decode()) as endpoint:
        monkeypatch.setenv("GNT_HPC_TARGET_URL", endpoint.url("/scratch"))
        monkeypatch.setenv("GNT_HPC_SSH_KEY", key.export_private_key().decode())
        monkeypatch.delenv("GNT_HPC_PASSWORD", raising=False)
        cloud = resource_set("cloud")["hpc"].process_config_and_initialize().model_copy(update={"verify_host_key": False})
        assert cloud.password is None and "PRIVATE KEY" in cloud.private_key
        exercise(UPath(tmp_path) / "src", cloud.root_path() / "ZAF" / "2020")
        wrong = cloud.model_copy(update={"private_key": asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()})
        with pytest.raises(Exception, match=r"(?i)permission denied|auth"):
            wrong.root_path().exists()


def _sftp_dir(endpoint) -> UPath:
    return HPCTargetResource(url=endpoint.url("/x"), password=endpoint.password, verify_host_key=False).root_path() / "ZAF" / "2020"


def _cut_off(tmp_path, index) -> UPath:
    """A copy of ``index`` interrupted a third of the way into its data file; returns the partial file left."""
    with sftp_server(str(tmp_path / "remote"), drop_after_bytes=index.data_bytes // 3) as endpoint, pytest.raises(TransferError):
        transfer_partition(index, _sftp_dir(endpoint), "ZAF|2020")
    landed = tmp_path / "remote" / "x" / "ZAF" / "2020"
    temps = [p for p in landed.iterdir() if p.name.startswith(f".tmp-{index.data_file}.")]
    assert len(temps) == 1 and 0 < temps[0].stat().st_size < index.data_bytes
    return temps[0]


def test_sftp_copy_cut_off_continues_from_its_size_and_is_verified_by_sha256sum_on_the_target(tmp_path):
    (tmp_path / "remote").mkdir()
    index = publish(UPath(tmp_path) / "src", 40, 3.0)
    index_bytes = (index.folder / INDEX_NAME).stat().st_size
    partial = _cut_off(tmp_path, index).stat().st_size
    with sftp_server(str(tmp_path / "remote")) as endpoint:
        copied = transfer_partition(index, _sftp_dir(endpoint), "ZAF|2020")
        assert [f.sent for f in copied] == [index.data_bytes - partial, index_bytes]  # only the rest was sent
        assert endpoint.stats["written"] == index.data_bytes - partial + index_bytes
        assert endpoint.stats["read"] == 0  # verified where the copy lives, not read back
        assert any(c.startswith("sha256sum -- /x/ZAF/2020/.tmp-tensors-") for c in endpoint.stats["commands"])
        assert transfer_problems(index, _sftp_dir(endpoint)) == [] and endpoint.stats["read"] == 0
    landed = tmp_path / "remote" / "x" / "ZAF" / "2020"
    assert sorted(p.name for p in landed.iterdir()) == sorted([INDEX_NAME, index.data_file])


def test_partial_copy_that_is_not_a_prefix_is_copied_again_and_sftp_only_accounts_read_back(tmp_path):
    (tmp_path / "remote").mkdir()
    index = publish(UPath(tmp_path) / "src", 40, 3.0)
    temp = _cut_off(tmp_path, index)
    temp.write_bytes(b"\xff" * temp.stat().st_size)  # damaged on the target
    with sftp_server(str(tmp_path / "remote"), shell=False) as endpoint:
        copied = transfer_partition(index, _sftp_dir(endpoint), "ZAF|2020")
        assert copied[0].sent > index.data_bytes  # the rest, then the whole file again
        assert endpoint.stats["read"] >= index.data_bytes  # no shell: the copy is read back to check it
        assert transfer_problems(index, _sftp_dir(endpoint)) == []
    assert file_digest(UPath(temp.parent / index.data_file)) == (index.data_bytes, index.sha256)


def test_s3_upload_cut_off_continues_from_the_parts_received_and_lands_with_s3s_sha256(tmp_path, s3_endpoint, s3_root, monkeypatch):
    import base64

    from gnt_assets.mining import transfer

    monkeypatch.setattr(transfer, "S3_PART", 5 * 2**20)
    index = publish(UPath(tmp_path) / "src", 100, 4.0)  # 11.9 MB: three parts
    target = HPCTargetResource(url=str(s3_root), endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing").root_path() / "ZAF" / "2020"
    fs, call_s3, calls = target.fs, target.fs.call_s3, []

    def flaky(method, **kwargs):
        calls.append(method)
        if method == "upload_part" and kwargs["PartNumber"] == 2 and calls.count("upload_part") == 2:
            raise ConnectionError("connection reset by the test")
        return call_s3(method, **kwargs)

    monkeypatch.setattr(fs, "call_s3", flaky)
    with pytest.raises(TransferError, match=r"ZAF\|2020: copying tensors-.*connection reset"):
        transfer_partition(index, target, "ZAF|2020")
    calls.clear()
    copied = transfer_partition(index, target, "ZAF|2020")
    assert copied[0].sent == index.data_bytes - 5 * 2**20 and calls.count("upload_part") == 3  # parts 2 and 3, then the index
    bucket, key, _ = fs.split_path((target / index.data_file).path)
    head = call_s3("head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert base64.b64decode(head["ChecksumSHA256"]).hex() == index.sha256  # S3's own full-object SHA-256
    calls.clear()
    assert transfer_problems(index, target) == [] and "get_object" not in calls  # checked from S3's checksum, not read back
    newer = publish(UPath(tmp_path) / "src", 60, 5.0)  # a newer version cut off, then superseded by the one after
    calls.clear()
    with pytest.raises(TransferError):
        transfer_partition(newer, target, "ZAF|2020")
    assert call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key.rsplit("/", 1)[0]).get("Uploads")
    monkeypatch.setattr(fs, "call_s3", call_s3)
    transfer_partition(publish(UPath(tmp_path) / "src", 7, 6.0), target, "ZAF|2020")
    assert not call_s3("list_multipart_uploads", Bucket=bucket, Prefix=key.rsplit("/", 1)[0]).get("Uploads")  # aborted
