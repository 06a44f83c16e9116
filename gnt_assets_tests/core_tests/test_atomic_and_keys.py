"""Atomic writes leave the old state or the new one; keys never escape their folder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from upath import UPath

from gnt_assets.core.atomic import TEMP_PREFIX, atomic_directory, atomic_open, remove_stale_temps
from gnt_assets.core.keys import PartitionKeyError, check_key, sanitize_key, unique_keys


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = UPath(tmp_path) / "tiles.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write(b"half of the new")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_directory_is_swapped_in_whole(tmp_path):
    target = UPath(tmp_path) / "tile"
    with atomic_directory(target) as building:
        (building / "features.pt").write_bytes(b"f")
    with pytest.raises(RuntimeError), atomic_directory(target) as building:
        (building / "features.pt").write_bytes(b"new")
        raise RuntimeError("killed")
    assert (target / "features.pt").read_bytes() == b"f"
    (UPath(tmp_path) / f"{TEMP_PREFIX}crashed").write_bytes(b"x")
    assert [p.name for p in remove_stale_temps(UPath(tmp_path))] == [f"{TEMP_PREFIX}crashed"]


def test_atomic_open_on_s3(s3_root):
    target = s3_root / "a.bin"
    with atomic_open(target) as handle:
        handle.write(b"abc")
    assert target.read_bytes() == b"abc"


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_sanitized_keys_are_always_safe(name):
    try:
        key = sanitize_key(name)
    except PartitionKeyError:
        return
    assert check_key(key) == key and not key.startswith(".")


def test_colliding_names_get_distinct_keys():
    assert unique_keys(["tile 1.tif", "tile_1.tif", "x"]) == ["tile_1.tif", "tile_1.tif-2", "x"]
    with pytest.raises(PartitionKeyError, match=r"'..'"):
        check_key("../etc")
