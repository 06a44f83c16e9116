"""The packed tensor format: layout, lazy reads, integrity errors, object stores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from upath import UPath

from gnt_assets.core.packed_tensors import (
    INDEX_NAME,
    PackedTensorError,
    TensorField,
    open_packed,
    read_index,
    verify_packed,
    write_packed,
)

FIELDS = (TensorField("features", "<f4", (3, 8, 8)), TensorField("labels", "|u1", (1, 8, 8)))


def sample(count: int, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    arrays = {
        "features": rng.normal(size=(count, 3, 8, 8)).astype("<f4"),
        "labels": rng.integers(0, 2, size=(count, 1, 8, 8), dtype=np.uint8),
    }
    rows = {"tile_ix": list(range(count)), "name": [f"t{i}" for i in range(count)]}
    return arrays, rows


def test_round_trip_through_memmap_torch_and_ranged_reads(tmp_path):
    arrays, rows = sample(70)
    folder = UPath(tmp_path) / "part"
    write_packed(folder, FIELDS, arrays, rows, attrs={"bands": ["a", "b", "c"]})
    index = open_packed(folder)
    assert index.count == 70 and index.attrs["bands"] == ["a", "b", "c"]
    assert index.record_dtype.itemsize % 64 == 0
    records = index.memmap()
    assert isinstance(records, np.memmap)
    np.testing.assert_array_equal(records["features"][[5, 69, 0]], arrays["features"][[5, 69, 0]])
    np.testing.assert_array_equal(records["labels"], arrays["labels"])
    np.testing.assert_array_equal(index.read_records([3, 1])["features"], arrays["features"][[3, 1]])
    torch_records = index.torch_records()
    start, _ = index.record_dtype.fields["features"][1], None
    features = torch_records[7, start : start + 3 * 8 * 8 * 4].view(torch.float32).reshape(3, 8, 8)
    assert torch.equal(features, torch.from_numpy(arrays["features"][7]))
    assert index.rows["name"][7] == "t7" and index.rows["offset"][7] == 7 * index.record_dtype.itemsize
    assert verify_packed(index) == []


@settings(max_examples=15, deadline=None)
@given(
    count=st.integers(0, 130),
    shape=st.tuples(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9)),
    dtype=st.sampled_from(["<f4", "<f8", "|u1", "<i2"]),
)
def test_any_layout_round_trips(tmp_path_factory, count, shape, dtype):
    folder = UPath(tmp_path_factory.mktemp("packed"))
    rng = np.random.default_rng(count)
    data = (rng.random((count, *shape)) * 100).astype(dtype)
    fields = (TensorField("x", dtype, shape), TensorField("m", "|u1", (1,)))
    write_packed(folder, fields, {"x": data, "m": np.ones((count, 1), np.uint8)}, {"i": list(range(count))})
    index = open_packed(folder)
    assert index.count == count
    np.testing.assert_array_equal(index.memmap()["x"], data)
    assert verify_packed(index) == []


def test_republish_replaces_data_file_and_removes_the_old_one(tmp_path):
    folder = UPath(tmp_path)
    first = write_packed(folder, FIELDS, *sample(4, seed=1))
    second = write_packed(folder, FIELDS, *sample(9, seed=2))
    assert first.data_file != second.data_file
    assert sorted(p.name for p in folder.iterdir()) == sorted([INDEX_NAME, second.data_file])
    assert open_packed(folder).count == 9


def test_truncated_data_file_is_named(tmp_path):
    folder = UPath(tmp_path)
    index = write_packed(folder, FIELDS, *sample(5))
    with open(index.data_path.path, "r+b") as handle:
        handle.truncate(index.data_bytes - 10)
    with pytest.raises(PackedTensorError, match="truncated"):
        open_packed(folder)
    assert "holds 4 whole records" in verify_packed(read_index(folder))[0]


def test_index_that_disagrees_with_its_data_names_the_record(tmp_path):
    folder = UPath(tmp_path)
    index = write_packed(folder, FIELDS, *sample(5))
    with open(index.data_path.path, "r+b") as handle:
        handle.seek(3 * index.record_dtype.itemsize + 17)
        handle.write(b"\xff\xff")
    problems = verify_packed(open_packed(folder))
    assert any("record 3 (tile_ix=3, name=t3) fails its CRC-32" in p for p in problems)
    assert any("SHA-256" in p for p in problems)


def test_mismatched_inputs_are_refused_before_anything_is_written(tmp_path):
    folder = UPath(tmp_path) / "p"
    arrays, rows = sample(3)
    with pytest.raises(PackedTensorError, match="field 'features' must be <f4"):
        write_packed(folder, FIELDS, {**arrays, "features": arrays["features"].astype("<f8")}, rows)
    with pytest.raises(PackedTensorError, match="disagree on the number of records"):
        write_packed(folder, FIELDS, arrays, {"tile_ix": [1]})
    assert not (folder / INDEX_NAME).exists()
    with pytest.raises(PackedTensorError, match="never written"):
        open_packed(folder)


def test_foreign_index_is_refused(tmp_path):
    folder = UPath(tmp_path)
    (folder / INDEX_NAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(PackedTensorError, match="is not gnt-packed-tensors/1"):
        read_index(folder)


def test_object_store_round_trip_with_ranged_reads(s3_root):
    arrays, rows = sample(6)
    write_packed(s3_root / "part", FIELDS, arrays, rows)
    index = open_packed(s3_root / "part")
    np.testing.assert_array_equal(index.read_records([5, 0])["labels"], arrays["labels"][[5, 0]])
    assert verify_packed(index) == []
    with pytest.raises(PackedTensorError, match="needs a local file"):
        index.memmap()
