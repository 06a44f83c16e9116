"""A failing check or run reaches the webhook exactly once, over real HTTP on loopback."""

from __future__ import annotations

import dagster as dg

from gnt_assets.partitions import raster_sources
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor


@dg.asset(partitions_def=raster_sources)
def elevation():
    return dg.MaterializeResult(metadata={"max": 9000.0})


@dg.asset_check(asset=elevation, blocking=True)
def elevation_is_plausible():
    return dg.AssetCheckResult(passed=False, description="max 9000 m is above Everest", metadata={"max": 9000.0})


@dg.asset
def broken_download():
    raise RuntimeError("HTTP 503 from source")


def tick(instance, url, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerts": AlertSinksResource(webhook_url=url)})
    check_failure_alert_sensor(context)
    return context.cursor


def test_failed_check_is_posted_once(instance, webhook):
    url, received = webhook
    instance.add_dynamic_partitions("raster_sources", ["everest"])
    result = dg.materialize([elevation, elevation_is_plausible], partition_key="everest", instance=instance, raise_on_error=False)
    assert not result.success
    cursor = tick(instance, url)
    # the blocking check also failed the run: one alert for each, then nothing more
    assert [a["alert"]["kind"] for a in received] == ["asset_check", "run_failure"]
    alert = received[0]["alert"]
    assert (alert["asset"], alert["partition"], alert["check"]) == ("elevation", "everest", "elevation_is_plausible")
    assert "above Everest" in received[0]["text"] and alert["severity"] == "ERROR"
    tick(instance, url, tick(instance, url, cursor))
    assert len(received) == 2


def test_failed_run_is_posted_once(instance, webhook):
    url, received = webhook
    dg.materialize([broken_download], instance=instance, raise_on_error=False)
    cursor = tick(instance, url)
    tick(instance, url, cursor)
    assert [a["alert"]["kind"] for a in received] == ["run_failure"]
    assert "failed" in received[0]["text"] and received[0]["alert"]["run_id"]
