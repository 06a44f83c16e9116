"""The mmap tensor IO manager through Dagster, on local disk and S3, and a writer killed mid-publish."""


import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import dagster as dg
import numpy as np
import pytest
from upath import UPath

from gnt_assets.core.packed_tensors import TensorField, TensorPack, open_packed, read_index, verify_packed
from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager, tensor_folder
from gnt_assets.resources.storage import StorageResource

FIELDS = (TensorField("features", "<f4", (2, 4, 4)), TensorField("labels", "|u1", (1, 4, 4)))
parts = dg.StaticPartitionsDefinition(["a", "b"])


def pack_for(key: str) -> TensorPack:
    value = {"a": 1.0, "b": 2.0}[key]
    count = 3 if key == "a" else 5
    return TensorPack(
        fields=FIELDS,
        arrays={
            "features": np.full((count, 2, 4, 4), value, "<f4"),
            "labels": np.ones((count, 1, 4, 4), np.uint8),
        },
        rows={"tile_ix": list(range(count))},
        attrs={"partition": key},
    )


@dg.asset(partitions_def=parts, io_manager_key="mmap_tensor_io_manager")
def packed(context: dg.AssetExecutionContext) -> TensorPack:
    return pack_for(context.partition_key)


@dg.asset(partitions_def=parts)
def packed_sum(packed) -> float:
    return float(np.asarray(packed.memmap()["features"]).sum()) if packed.data_path.protocol in ("", "file") else float(
        packed.read_records(range(packed.count))["features"].sum()
    )


@dg.asset(ins={"packed": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())})
def packed_counts(packed) -> dict:
    return {key: index.count for key, index in packed.items()}


def run_everything(storage: StorageResource, instance) -> None:
    resources = {"mmap_tensor_io_manager": MmapTensorIOManager(storage=storage), "io_manager": dg.mem_io_manager}
    for key in ("a", "b"):
        result = dg.materialize([packed, packed_sum], partition_key=key, resources=resources, instance=instance)
        assert result.output_for_node("packed_sum") == (96.0 if key == "a" else 320.0)
        metadata = result.asset_materializations_for_node("packed")[0].metadata
        assert metadata["files"].value == 2 and metadata["records"].value == (3 if key == "a" else 5)
        assert metadata["bytes"].value > 0
    result = dg.materialize(
        [packed, packed_counts], selection=[packed_counts.key], resources=resources, instance=instance
    )
    assert result.output_for_node("packed_counts") == {"a": 3, "b": 5}


def test_io_manager_on_local_disk(storage_root, instance):
    storage = StorageResource(root=str(storage_root))
    run_everything(storage, instance)
    folder = tensor_folder(storage.root_path, packed.key, "b")
    assert folder == UPath(storage_root) / "tensors" / "packed" / "b"
    assert open_packed(folder).attrs == {"partition": "b"}


def test_io_manager_through_s3fs(s3_root, s3_endpoint, instance):
    storage = StorageResource(root=str(s3_root), endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing")
    run_everything(storage, instance)
    index = open_packed(tensor_folder(storage.root_path, packed.key, "a"))
    assert index.data_path.protocol == "s3" and verify_packed(index) == []


def test_multi_partition_keys_become_folders(tmp_path):
    key = dg.MultiPartitionKey({"year": "2020", "country": "ZAF"})
    assert tensor_folder(UPath(tmp_path), dg.AssetKey("t"), key) == UPath(tmp_path) / "tensors" / "t" / "ZAF" / "2020"
    with pytest.raises(ValueError, match=r"contains '..'"):
        tensor_folder(UPath(tmp_path), dg.AssetKey("t"), "..")


WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from upath import UPath
    from gnt_assets.core.packed_tensors import TensorField, TensorPack

    folder = UPath(sys.argv[1])
    fields = (TensorField("features", "<f4", (7, 64, 64)), TensorField("labels", "|u1", (1, 64, 64)))
    version = int(sys.argv[2])
    print("ready", flush=True)
    while True:
        version += 1
        count = 40 + version % 7
        TensorPack(
            fields,
            {"features": np.full((count, 7, 64, 64), version, "<f4"), "labels": np.full((count, 1, 64, 64), version % 251, np.uint8)},
            {"version": [version] * count},
            {"version": version},
        ).write(folder)
        print(f"published {version}", flush=True)
    """
)


def assert_whole(folder: UPath) -> int:
    """The published state is one complete version: index, data, checksums and content agree."""
    index = open_packed(folder)
    assert verify_packed(index) == []
    version = index.attrs["version"]
    records = index.memmap()
    assert index.count == 40 + version % 7 and set(index.rows["version"]) == {version}
    assert np.all(records["features"] == version) and np.all(records["labels"] == version % 251)
    return version


def test_writer_killed_at_random_points_leaves_old_or_new_never_torn(tmp_path):
    """22 writers, each killed after a random number of completed publishes (0-2) plus a random delay
    into the next one, so kills land before, inside and between publishes."""
    folder = UPath(tmp_path) / "part"
    rng = random.Random(7)
    last_published = None
    for point in range(22):
        writer = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(point * 1000)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout.readline().strip() == "ready"
        for _ in range(rng.randint(0, 2)):
            last_published = int(writer.stdout.readline().split()[1])
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
        if last_published is None:
            # Nothing was reported published yet: either nothing is presented or one whole first version.
            if (folder / "index.json").exists():
                last_published = assert_whole(folder)
                assert last_published // 1000 <= point
            continue
        version = assert_whole(folder)
        # The newest reported publish, or a later one of this writer that completed before the kill.
        assert version == last_published or (version > last_published and version // 1000 == point)
        last_published = version


CONCURRENT_WRITER = textwrap.dedent(
    """
    import sys
    import dagster as dg
    import numpy as np
    from gnt_assets.core.packed_tensors import TensorField, TensorPack
    from gnt_assets.io_managers.mmap_tensors import MmapTensorIOManager
    from gnt_assets.resources.storage import StorageResource

    manager = MmapTensorIOManager(storage=StorageResource(root=sys.argv[1]))
    fields = (TensorField("features", "<f4", (4, 32, 32)), TensorField("labels", "|u1", (1, 32, 32)))
    first, writes = int(sys.argv[2]), int(sys.argv[3])
    for version in range(first, first + writes):
        count = 40 + version % 7
        pack = TensorPack(
            fields,
            {"features": np.full((count, 4, 32, 32), version, "<f4"), "labels": np.full((count, 1, 32, 32), version % 251, np.uint8)},
            {"version": [version] * count},
            {"version": version},
        )
        manager.handle_output(dg.build_output_context(asset_key=dg.AssetKey("packed"), partition_key="a"), pack)
    """
)


def test_two_writers_of_one_partition_through_the_io_manager_never_break_each_other(tmp_path):
    """Two processes publish the same partition 20 times each; a third reads all along. Each writer
    builds its own data file and nobody removes a file another live writer holds, so every write
    succeeds and every read is one whole version (or, read just as a newer one replaced it, a superseded one)."""
    folder = tensor_folder(UPath(tmp_path), dg.AssetKey("packed"), "a")
    writers = [subprocess.Popen([sys.executable, "-c", CONCURRENT_WRITER, str(tmp_path), str(first), "20"],
                                stderr=subprocess.PIPE, text=True) for first in (1000, 2000)]
    reads = superseded = 0
    while any(writer.poll() is None for writer in writers):
        if not (folder / "index.json").exists():
            continue
        time.sleep(0.02)
        index = open_packed(folder)
        try:
            whole = verify_packed(index) == [] and bool(np.all(index.memmap()["features"] == index.attrs["version"]))
        except FileNotFoundError:
            whole = False
        if whole:
            reads += 1
        else:  # the data file went after we read its index: only ever because a newer index replaced it
            assert read_index(folder).data_file != index.data_file
            superseded += 1
    errors = [writer.stderr.read() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    version = open_packed(folder).attrs["version"]
    assert verify_packed(open_packed(folder)) == [] and version in (1019, 2019)  # the last complete publish wins
    assert reads > 0, superseded
    data_files = [p.name for p in folder.iterdir() if p.name.startswith("tensors-")]
    assert len(data_files) <= 2 and open_packed(folder).data_file in data_files  # at most one left by a writer still holding it
