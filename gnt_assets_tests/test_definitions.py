"""Loading the code location catches most wiring mistakes in a second."""

from __future__ import annotations

import pytest

from gnt_assets.definitions import defs
from gnt_assets.profiles import resources_for_profile
from gnt_assets.resources import ProfileError

PIPELINE_GROUPS = {"mining", "conus404", "rasters", "sentinel", "mapterhorn"}


def asset_graph():
    return defs.get_repository_def().asset_graph


def test_every_job_resolves():
    repository = defs.get_repository_def()
    for job in repository.get_all_jobs():
        assert job.name


def test_every_asset_has_a_description_a_pipeline_group_and_a_check():
    graph = asset_graph()
    checked = {key.asset_key for key in graph.asset_check_keys}
    problems = []
    for key in graph.materializable_asset_keys:
        node = graph.get(key)
        name = key.to_user_string()
        if not node.description:
            problems.append(f"{name}: no description")
        if node.group_name not in PIPELINE_GROUPS:
            problems.append(f"{name}: group {node.group_name!r} is not a pipeline group")
        if key not in checked:
            problems.append(f"{name}: no asset check")
    assert not problems, "\n".join(problems)


def test_unknown_profile_names_the_setting():
    with pytest.raises(ProfileError, match="GNT_PROFILE='staging'"):
        resources_for_profile("staging")


def test_cloud_profile_without_storage_root_says_what_to_set(monkeypatch):
    monkeypatch.delenv("GNT_STORAGE_ROOT", raising=False)
    with pytest.raises(ProfileError, match="GNT_STORAGE_ROOT"):
        resources_for_profile("cloud")


def test_sensors_and_schedules_have_unique_names():
    repository = defs.get_repository_def()
    names = [s.name for s in repository.sensor_defs] + [s.name for s in repository.schedule_defs]
    assert len(names) == len(set(names))
    assert "check_failure_alert_sensor" in names
