"""The storage root: any fsspec URL, checked at the start of a run, never climbed out of."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from gnt_assets.core.keys import PartitionKeyError
from gnt_assets.resources.storage import StorageResource


@dg.asset
def probe(storage: StorageResource) -> None:
    (storage.path("probe") / "ok.txt").write_text("ok")


def test_unwritable_root_fails_at_run_start_naming_the_setting(tmp_path, instance):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a regular file instead
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        locked = blocker / "root"
    result = dg.materialize([probe], resources={"storage": StorageResource(root=str(locked))}, instance=instance, raise_on_error=False)
    assert not result.success
    error = result.all_events[-1].event_specific_data.error.to_string()
    assert "cannot be written" in error and "GNT_STORAGE_ROOT" in error


@pytest.mark.parametrize("segment", ["..", "a/../../etc", "ZAF|2020", "x,y"])
def test_path_segments_that_could_escape_are_refused(tmp_path, segment):
    storage = StorageResource(root=str(tmp_path))
    with pytest.raises(PartitionKeyError, match="sanitize_key"):
        storage.path("rasters", segment)


def test_root_on_the_s3_protocol(s3_endpoint):
    storage = StorageResource(root=f"{s3_endpoint.root}/gnt", endpoint_url=s3_endpoint.endpoint_url, key="testing", secret="testing")
    target = storage.path("tables", "clusters.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"PAR1")
    assert target.protocol == "s3" and target.read_bytes() == b"PAR1"
    with dg.build_init_resource_context() as context:
        storage.setup_for_execution(context)
