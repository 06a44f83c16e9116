"""What the UI shows about every asset, sensor, schedule and job: owners, kinds, groups, partitions and plain descriptions.

The compact snapshot of every asset (group, kinds, owners, partitions, automation, freshness) is checked in as
``asset_specs.json`` beside this file, so a change to what the UI shows is a reviewed diff. After an intended
change, regenerate it with:

    GNT_UPDATE_SNAPSHOT=1 python -m pytest gnt_assets_tests/test_asset_specs.py

and commit the new ``asset_specs.json``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import dagster as dg

from gnt_assets.definitions import defs

SNAPSHOT = Path(__file__).with_name("asset_specs.json")
OWNERS = {"mining": "team:mining", "conus404": "team:climate", "rasters": "team:rasters", "sentinel": "team:sentinel",
          "mapterhorn": "team:mapterhorn"}
# Words from the project's own documents or from reStructuredText that mean nothing to a user of the UI.
NO_JOB_RUNS = {"check_failure_alert_sensor", "automation_sensor"}  # the one alerts, the other requests assets itself
INTERNAL = re.compile(r"``|:param|:class:|\.\. code-block|\bthe seed\b|\bseed's\b|\bseeds?\b|DESIGN section|\bissue \d+", re.IGNORECASE)


def _repository() -> dg.RepositoryDefinition:
    return defs.get_repository_def()


def _partitions(node) -> str | None:
    partitions = node.partitions_def
    if partitions is None:
        return None
    if isinstance(partitions, dg.MultiPartitionsDefinition):
        inner = ", ".join(f"{d.name}: {type(d.partitions_def).__name__}" for d in partitions.partitions_defs)
        return f"MultiPartitionsDefinition({inner})"
    return type(partitions).__name__


def snapshot() -> dict[str, dict]:
    graph = _repository().asset_graph
    specs = {}
    for key in sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string()):
        node = graph.get(key)
        specs[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "owners": list(node.owners),
            "partitions": _partitions(node),
            "automation": node.automation_condition.get_label() if node.automation_condition else None,
            "freshness": type(node.freshness_policy).__name__ if node.freshness_policy else None,
        }
    return specs


def _wording_problems(name: str, description: str | None) -> list[str]:
    if not description or not description.strip():
        return [f"{name}: no description"]
    return [f"{name}: {match.group(0)!r} in {description!r}" for match in INTERNAL.finditer(description)]


def test_every_asset_has_an_owner_kinds_a_group_and_a_plain_description():
    graph = _repository().asset_graph
    problems = []
    for key in graph.materializable_asset_keys:
        node, name = graph.get(key), key.to_user_string()
        if node.group_name not in OWNERS:
            problems.append(f"{name}: group {node.group_name!r} is not a pipeline group")
        elif list(node.owners) != [OWNERS[node.group_name]]:
            problems.append(f"{name}: owners {list(node.owners)}, expected [{OWNERS[node.group_name]!r}]")
        if not node.kinds:
            problems.append(f"{name}: no kinds")
        if "dagster/code_references" not in node.metadata:
            problems.append(f"{name}: no source-code link")
        problems += _wording_problems(name, node.description)
    assert not problems, "\n".join(problems)


def test_every_check_description_is_plain():
    graph = _repository().asset_graph
    problems = [p for key in graph.asset_check_keys for p in _wording_problems(f"check {key.name}", graph.get(key).description)]
    assert not problems, "\n".join(problems)


def test_every_sensor_schedule_and_job_has_a_plain_description():
    repository = _repository()
    named = [*repository.sensor_defs, *repository.schedule_defs,
             *(job for job in repository.get_all_jobs() if not job.name.startswith("__"))]  # Dagster's hidden jobs
    problems = [p for definition in named for p in _wording_problems(definition.name, definition.description)]
    assert not problems, "\n".join(problems)


def test_sensors_and_schedules_that_launch_runs_target_named_jobs():
    repository = _repository()
    problems = [sensor.name for sensor in repository.sensor_defs
                if sensor.name not in NO_JOB_RUNS and (not sensor.has_jobs or sensor.job_name.startswith("__"))]
    problems += [schedule.name for schedule in repository.schedule_defs if schedule.job_name.startswith("__")]
    assert not problems, f"these launch runs of an anonymous job: {problems}"


def test_asset_specs_match_the_snapshot():
    current = snapshot()
    if os.environ.get("GNT_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
    recorded = json.loads(SNAPSHOT.read_text())
    changed = sorted(name for name in set(current) | set(recorded) if current.get(name) != recorded.get(name))
    assert not changed, (f"asset specs differ from {SNAPSHOT.name} for {changed}; if intended, regenerate with "
                         "GNT_UPDATE_SNAPSHOT=1 python -m pytest gnt_assets_tests/test_asset_specs.py")
