"""conus404_daily and what hangs off it, materialized through Dagster on a small generated source."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from datetime import date

import dagster as dg
import numpy as np
import pydantic
import pytest
import xarray as xr
from dagster._serdes import serialize_value

from gnt_assets.conus404.analysis_ready import Ledger
from gnt_assets.conus404.daily_store import open_daily
from gnt_assets.conus404.definitions import defs
from gnt_assets.conus404.local import LocalConus404Source
from gnt_assets.conus404.run_history import failed_days, good_days
from gnt_assets.conus404.schedules import conus404_catchup_schedule
from gnt_assets.conus404.sensors import conus404_failure_report_sensor
from gnt_assets.conus404.variables import DEFAULT_VARIABLES
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.sensors.check_failure_alerts import check_failure_alert_sensor
from gnt_assets_tests.conus404_tests.conus404_fixtures import local_resources, materialize_days

DAYS = ["2020-07-01", "2020-07-02", "2020-07-03"]


@contextlib.contextmanager
def webhook():
    """A loopback webhook that records every JSON body POSTed to it."""
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}


def _failure_text(result: dg.ExecuteInProcessResult) -> str:
    return " ".join(e.step_failure_data.error.message for e in result.all_events if e.is_step_failure)


def test_backfill_with_a_corrupted_day_fails_only_that_day(storage_root, instance):
    resources = local_resources(storage_root, faults={"2020-07-02": "impossible_temperature"})
    results = materialize_days(instance, resources, DAYS, selection=["conus404_daily", "conus404_daily_summary"])

    assert [results[d].success for d in DAYS] == [True, False, True]
    assert _checks(results["2020-07-02"])["t2_plausible"] is False
    assert all(_checks(results["2020-07-01"]).values()) and all(_checks(results["2020-07-03"]).values())
    assert "t2_plausible" in _failure_text(results["2020-07-02"])
    # the blocking check kept the summary of the bad day from running
    summarized = instance.get_materialized_partitions(dg.AssetKey("conus404_daily_summary"))
    assert summarized == {"2020-07-01", "2020-07-03"}

    store = open_daily(storage_root / "conus404" / "daily.zarr")
    day1 = store["T2"].sel(time="2020-07-01").values
    day3 = store["T2"].sel(time="2020-07-03").values
    assert np.isfinite(day1).all() and 250 < float(day1.mean()) < 320
    assert store["T2"].attrs["cell_methods"] == "time: mean" and store["T2"].attrs["units"] == "K"
    assert store["PREC_ACC_NC"].attrs["cell_methods"] == "time: sum"
    assert store.odc.geobox is not None and "Lambert" in store.odc.geobox.crs.to_wkt()
    assert store.sizes["time"] == 15706  # every partition day, one chunk each
    assert store["T2"].encoding["chunks"][0] == 1

    # the report lists the failure, with the check's finding
    report = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_failure_report"],
                            instance=instance, resources=resources)
    document = json.loads((storage_root / "conus404" / "ultimate_failures.json").read_text())
    assert [f["day"] for f in document["failures"]] == ["2020-07-02"]
    assert "T2 outside" in document["failures"][0]["error"]
    assert _checks(report)["no_ultimate_failures"] is False

    # the shared alert sensor sends the failed check once, however often it runs
    with webhook() as (url, received):
        alerts = {"alerts": AlertSinksResource(webhook_url=url, start_from="beginning")}
        with dg.build_sensor_context(instance=instance, resources=alerts) as context:
            check_failure_alert_sensor(context)
            check_failure_alert_sensor(context)
    t2_alerts = [a for a in received if a["alert"].get("kind") == "asset_check" and "t2_plausible" in a["text"]]
    assert len(t2_alerts) == 1 and "2020-07-02" in t2_alerts[0]["text"]

    # the failure report sensor asks for a refresh once per batch of finished daily runs
    with dg.build_sensor_context(instance=instance) as context:
        assert isinstance(conus404_failure_report_sensor(context), dg.RunRequest)
        assert isinstance(conus404_failure_report_sensor(context), dg.SkipReason)

    # the analysis-ready copy takes only the days that passed their checks, and says which
    ready = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_analysis_ready"],
                           instance=instance, resources=resources)
    assert ready.success and all(_checks(ready).values())
    ready_metadata = ready.get_asset_materialization_events()[0].materialization.metadata
    assert "data:image/png;base64," in ready_metadata["T2 daily mean (K), 2020-07-03"].value
    assert ready_metadata["min (T2 daily mean 2020-07-03, K)"].value == pytest.approx(float(day3.min()), rel=1e-6)
    target = storage_root / "conus404" / "analysis_ready.zarr"
    copy = xr.open_zarr(str(target), consolidated=False)
    assert Ledger.read(target).days == ["2020-07-01", "2020-07-03"]
    assert copy["T2"].encoding["chunks"] == (36, 12, 16) and copy.sizes["time"] == 15706
    np.testing.assert_array_equal(copy["T2"].sel(time="2020-07-01").values, day1)
    assert np.isnan(copy["T2"].sel(time="2020-07-02").values).all()
    assert ready_metadata["blocks_rewritten"].value == 1

    # once the source is fixed, re-running the day succeeds without cleanup and clears the report
    fixed = local_resources(storage_root)
    assert materialize_days(instance, fixed, ["2020-07-02"])["2020-07-02"].success
    dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_failure_report"],
                   instance=instance, resources=fixed)
    assert json.loads((storage_root / "conus404" / "ultimate_failures.json").read_text())["failures"] == []

    # the copy takes the repaired day by rewriting its one 36-day block; with nothing new, nothing is rewritten
    for rewritten in (1, 0):
        again = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_analysis_ready"],
                               instance=instance, resources=fixed)
        assert again.success and all(_checks(again).values())
        metadata = again.get_asset_materialization_events()[0].materialization.metadata
        assert metadata["blocks_rewritten"].value == rewritten
    assert Ledger.read(target).days == DAYS
    day2 = open_daily(storage_root / "conus404" / "daily.zarr")["T2"].sel(time="2020-07-02").values
    np.testing.assert_array_equal(xr.open_zarr(str(target), consolidated=False)["T2"].sel(time="2020-07-02").values, day2)
    np.testing.assert_array_equal(open_daily(storage_root / "conus404" / "daily.zarr")["T2"].sel(time="2020-07-01").values, day1)


def test_source_faults_fail_their_blocking_check(storage_root, instance):
    faults = {"2020-07-02": "missing_hour", "2020-07-03": "nan_field"}
    results = materialize_days(instance, local_resources(storage_root, faults=faults), list(faults))
    assert not results["2020-07-02"].success and _checks(results["2020-07-02"])["hours_complete"] is False
    assert not results["2020-07-03"].success and _checks(results["2020-07-03"])["no_all_nan_variable"] is False


def test_day_outside_the_window_fails_without_retry_and_names_the_window(storage_root, instance):
    resources = local_resources(storage_root)
    # 2020-07-04 is the window's last full day (its accumulations end at 2020-07-05T00:00); 07-05 is not
    result = materialize_days(instance, resources, ["2020-07-05"])["2020-07-05"]
    text = _failure_text(result)
    assert "2020-07-05" in text and "outside the source window" in text
    assert not any(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events)


def test_transient_timeout_is_retried(storage_root, instance):
    resources = local_resources(storage_root, transient_failures={"2020-07-01": 1})
    result = materialize_days(instance, resources, ["2020-07-01"])["2020-07-01"]
    assert result.success
    assert sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events) == 1


def test_unknown_variable_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(pydantic.ValidationError, match="T2M"):
        LocalConus404Source(root=str(tmp_path), variables=["T2", "T2M"])


def test_catchup_schedule_requests_the_window_days_not_yet_materialized(storage_root, instance):
    source = local_resources(storage_root, days=3)["conus404_source"]
    context = dg.build_schedule_context(instance=instance, resources={"conus404_source": source})
    requests = conus404_catchup_schedule(context)
    assert [r.partition_key for r in requests] == ["2020-07-01", "2020-07-02", "2020-07-03"]
    assert len({r.run_key for r in requests}) == 3


def _ranged_run(storage_root, instance, first: str, last: str, faults: dict) -> dg.ExecuteInProcessResult:
    """One run over a range of days, as BackfillPolicy.multi_run launches it."""
    return dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_daily"], instance=instance,
                          resources=local_resources(storage_root, faults=faults), raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})


def test_a_ranged_backfill_run_fails_only_the_corrupted_day(storage_root, instance):
    """BackfillPolicy.multi_run hands one run a range of days; the report still names only the bad one."""
    result = _ranged_run(storage_root, instance, "2020-07-01", "2020-07-03", faults={"2020-07-02": "impossible_temperature"})
    assert not result.success
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "t2_plausible")
    assert evaluation.metadata["failed_days"].value == "2020-07-02"
    assert instance.get_materialized_partitions(dg.AssetKey("conus404_daily")) == set(DAYS)
    assert [f.day for f in failed_days(instance, dg.AssetKey("conus404_daily"))] == ["2020-07-02"]
    assert good_days(instance, dg.AssetKey("conus404_daily")) == [date(2020, 7, 1), date(2020, 7, 3)]


def test_a_retried_ranged_run_redoes_only_the_day_that_failed(storage_root, instance):
    """A year-long backfill run that meets one timeout keeps the days it wrote; its retry reads only that day."""
    result = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_daily"], instance=instance,
                            resources=local_resources(storage_root, transient_failures={"2020-07-02": 1}), raise_on_error=False,
                            tags={"dagster/asset_partition_range_start": "2020-07-01", "dagster/asset_partition_range_end": "2020-07-03"})
    assert result.success
    assert sum(e.event_type_value == "STEP_UP_FOR_RETRY" for e in result.all_events) == 1
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("retry 1: 2 days written by an earlier attempt are kept; 1 to do" in m for m in logs)
    assert not any("conus404 day 2020-07-01 (1/" in m for m in logs[next(i for i, m in enumerate(logs) if "retry 1:" in m):])
    assert instance.get_materialized_partitions(dg.AssetKey("conus404_daily")) == {"2020-07-01", "2020-07-02", "2020-07-03"}


def test_a_ranged_run_that_fails_a_read_still_checks_the_days_it_wrote(storage_root, instance):
    """07-05 lies outside the window (the step fails); 07-03 and 07-04 are written and checked in the step."""
    result = _ranged_run(storage_root, instance, "2020-07-03", "2020-07-05", faults={"2020-07-04": "impossible_temperature"})
    assert not result.success
    text = _failure_text(result)
    assert "[2020-07-05] conus404 day 2020-07-05: " in text and "outside the source window" in text
    assert "[2020-07-04] check t2_plausible failed: T2 outside" in text
    assert "SourceWindowError" not in text and "BlockingChecksFailed" not in text
    logged = instance.all_logs(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)  # by the failed step
    evaluations = [entry.dagster_event.event_specific_data for entry in logged]
    failed = {(e.check_name, e.partition) for e in evaluations if not e.passed}
    assert ("t2_plausible", "2020-07-04") in failed
    assert not any(partition == "2020-07-03" for _, partition in failed)
    assert instance.get_materialized_partitions(dg.AssetKey("conus404_daily")) == {"2020-07-03", "2020-07-04"}
    failures = {f.day: f.error for f in failed_days(instance, dg.AssetKey("conus404_daily"))}
    assert list(failures) == ["2020-07-04", "2020-07-05"]
    # each day's entry holds its own error only, in full
    assert failures["2020-07-04"].startswith("check t2_plausible failed: T2 outside") and "2020-07-05" not in failures["2020-07-04"]
    assert "outside the source window" in failures["2020-07-05"] and "t2_plausible" not in failures["2020-07-05"]
    assert failures["2020-07-05"].endswith("or use GNT_PROFILE=cloud")
    assert good_days(instance, dg.AssetKey("conus404_daily")) == [date(2020, 7, 3)]


def _metadata_bytes(instance, run_id: str) -> int:
    """Bytes of metadata the run put in the event log (materializations and check evaluations)."""
    size = 0
    for entry in instance.all_logs(run_id, of_type={dg.DagsterEventType.ASSET_MATERIALIZATION, dg.DagsterEventType.ASSET_CHECK_EVALUATION}):
        data = entry.dagster_event.event_specific_data
        metadata = data.materialization.metadata if hasattr(data, "materialization") else data.metadata
        size += len(serialize_value(dict(metadata)))
    return size


def test_awkward_days_pass_with_findings_small_metadata_and_previews_on_the_first(storage_root, instance):
    """A bucket reset and a few bad cells pass with their findings; each day's event-log metadata stays under 4 KB
    except on the first of the month, which carries the quick looks."""
    faults = {"2020-07-01": "bucket_reset", "2020-07-02": "few_bad_cells"}
    resources = local_resources(storage_root, rules={"max_bad_share": 0.02}, start="2020-06-30", days=3, faults=faults)
    days = ["2020-06-30", "2020-07-01", "2020-07-02"]
    results = materialize_days(instance, resources, days)
    assert all(r.success for r in results.values())
    reset = {e.check_name: e for e in results["2020-07-01"].get_asset_check_evaluations()}
    assert len(reset) == 8 and all(e.passed for e in reset.values())
    assert "bucket resets handled (cells): {'ACSWDNB': 192}" in reset["non_negative_totals"].metadata["finding"].value
    bad = {e.check_name: e for e in results["2020-07-02"].get_asset_check_evaluations()}
    assert bad["t2_plausible"].passed and bad["t2_plausible"].metadata["offenders"].value["2020-07-02"]["T2 high"]["cells"] == 3
    assert bad["dewpoint_below_temperature"].passed and "within the 2.00% threshold" in bad["dewpoint_below_temperature"].metadata["finding"].value
    sizes = {day: _metadata_bytes(instance, results[day].run_id) for day in days}
    assert sizes["2020-06-30"] < 4096 and sizes["2020-07-02"] < 4096, sizes
    previews = {day: any("data:image/png" in str(v.value) for m in results[day].asset_materializations_for_node("conus404_daily")
                         for v in m.metadata.values()) for day in days}
    assert previews == {"2020-06-30": False, "2020-07-01": True, "2020-07-02": False}


def test_the_record_s_last_day_is_a_warning_not_a_permanent_failure(storage_root, instance):
    resources = local_resources(storage_root, start="2022-09-29", days=2)  # the generated record ends 2022-09-30T23:00
    result = materialize_days(instance, resources, ["2022-09-30"])["2022-09-30"]
    assert result.success
    hours = next(e for e in result.get_asset_check_evaluations() if e.check_name == "hours_complete")
    assert not hours.passed and hours.severity == dg.AssetCheckSeverity.WARN
    assert "record's last day" in hours.metadata["finding"].value
    assert int(open_daily(storage_root / "conus404" / "daily.zarr")["source_hours"].sel(time="2022-09-30").values) == 23
    assert failed_days(instance, dg.AssetKey("conus404_daily")) == []


def test_a_variable_added_to_the_configuration_joins_the_existing_store(storage_root, instance):
    fewer = [v for v in DEFAULT_VARIABLES if v != "Z"]
    assert materialize_days(instance, local_resources(storage_root, variables=fewer), ["2020-07-01"])["2020-07-01"].success
    assert "Z" not in open_daily(storage_root / "conus404" / "daily.zarr")
    assert materialize_days(instance, local_resources(storage_root), ["2020-07-02"])["2020-07-02"].success
    store = open_daily(storage_root / "conus404" / "daily.zarr")
    assert np.isnan(store["Z"].sel(time="2020-07-01").values).all()  # the old day, backfillable
    assert np.isfinite(store["Z"].sel(time="2020-07-02").values).all()
    assert materialize_days(instance, local_resources(storage_root), ["2020-07-01"])["2020-07-01"].success
    assert np.isfinite(open_daily(storage_root / "conus404" / "daily.zarr")["Z"].sel(time="2020-07-01").values).all()


def test_the_copy_check_catches_a_block_that_differs_from_the_daily_store(storage_root, instance):
    resources = local_resources(storage_root)
    assert materialize_days(instance, resources, ["2020-07-01"])["2020-07-01"].success
    run = dg.materialize(assets=[*defs.assets, *defs.asset_checks], selection=["conus404_analysis_ready"],
                         instance=instance, resources=resources)
    assert _checks(run)["analysis_ready_matches_daily"] is True
    import zarr

    group = zarr.open_group(str(storage_root / "conus404" / "analysis_ready.zarr"), mode="r+", zarr_format=3)
    index = (date(2020, 7, 1) - date(1979, 10, 1)).days
    group["T2"][index, 0, 0] = 0.0  # a corrupted cell of a listed day
    from gnt_assets.conus404.checks import analysis_ready_matches_daily

    result = analysis_ready_matches_daily(storage=resources["storage"])
    assert not result.passed and result.metadata["differing_cells"].value["T2"] == 1
