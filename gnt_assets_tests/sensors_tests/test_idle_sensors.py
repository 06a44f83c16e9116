"""An idle sensor says why it skipped (never Dagster's "Sensor function returned an empty result")."""

from __future__ import annotations

import dagster as dg
import pytest

from gnt_assets.conus404.sensors import conus404_failure_report_sensor
from gnt_assets.mapterhorn.sensors import mapterhorn_source_merge_sensor
from gnt_assets.mining.janitor_checks import janitor_repair_sensor
from gnt_assets.mining.sensors import gee_export_sensor
from gnt_assets.profiles import resources_for_profile
from gnt_assets.rasters.sensors import raster_folder_sensor
from gnt_assets.sentinel.sensors import sentinel_chunk_sensor

EXPECTED = {
    gee_export_sensor: "no country-year newly ready for its region run",
    janitor_repair_sensor: "no janitor run in clean mode demoted anything",
    conus404_failure_report_sensor: "no conus404_daily run finished",
    raster_folder_sensor: "no new or replaced rasters in",
    sentinel_chunk_sensor: "sentinel_grid is not materialized yet",
    mapterhorn_source_merge_sensor: "no source finished new files since its last merge",
}


@pytest.mark.parametrize("sensor", list(EXPECTED), ids=lambda s: s.name)
def test_an_idle_sensor_gives_a_specific_skip_reason(sensor, storage_root, instance):
    resources = resources_for_profile("local")
    if sensor is raster_folder_sensor:
        resources["raster_folder"].folder_path(resources["storage"].root_path).mkdir(parents=True, exist_ok=True)
    from gnt_assets.definitions import defs

    with dg.build_sensor_context(instance=instance, definitions=defs, resources=resources) as context:
        result = sensor(context)
    reason = result if isinstance(result, dg.SkipReason) else getattr(result, "skip_reason", None)
    assert isinstance(reason, dg.SkipReason), f"{sensor.name} returned {result!r}"
    assert not getattr(result, "run_requests", None)
    assert EXPECTED[sensor] in reason.skip_message
