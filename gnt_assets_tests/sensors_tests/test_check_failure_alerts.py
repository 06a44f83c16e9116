"""Failed checks and runs reach the webhook exactly once, over real HTTP on loopback, and nothing blocks them:
a sink that fails then recovers, a tick killed mid-way, 20,000 failures, a first deploy with history."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest
import sqlalchemy as db
from dagster._core.events import DagsterEvent, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable, SqlEventLogStorageTable
from dagster._serdes import serialize_value

from gnt_assets.core.alerts import AlertLedger, CheckFailure, MemoryStore, Sink, check_digests, payload, validate_webhook_url
from gnt_assets.core.errors import InputError
from gnt_assets.partitions import raster_sources
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.sensors.check_failure_alerts import InstanceKeyValueStore, check_failure_alert_sensor


@dg.asset(partitions_def=raster_sources)
def elevation():
    return dg.MaterializeResult(metadata={"max": 9000.0})


@dg.asset_check(asset=elevation, blocking=True)
def elevation_is_plausible():
    return dg.AssetCheckResult(passed=False, description="max 9000 m is above Everest", metadata={"max": 9000.0})


@dg.asset
def broken_download():
    raise RuntimeError("HTTP 503 from source")


def tick(instance, url, cursor=None, **config):
    resources = {"alerts": AlertSinksResource(webhook_url=url, **config)}
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    result = check_failure_alert_sensor(context)
    return context.cursor, result


class Webhook:
    """A loopback webhook: answers each POST with the next scripted status (then 200), records the 200s."""

    def __init__(self, statuses=(), hold_from: int | None = None):
        self.received: list[dict] = []
        self.attempts = 0
        self.statuses = list(statuses)
        self.hold_from = hold_from
        self.held = threading.Event()
        self.release = threading.Event()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.attempts += 1
                if hook.hold_from is not None and len(hook.received) >= hook.hold_from:
                    hook.held.set()
                    hook.release.wait(30)
                    return
                status = hook.statuses.pop(0) if hook.statuses else 200
                if status == 200:
                    hook.received.append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self):
        return [body["alert"]["id"] for body in self.received]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    created = []

    def make(*args, **kwargs):
        created.append(Webhook(*args, **kwargs))
        return created[-1]

    yield make
    for webhook in created:
        webhook.close()


def fail_runs(instance, count):
    for _ in range(count):
        dg.materialize([broken_download], instance=instance, raise_on_error=False)


def test_failed_check_is_posted_once_as_one_digest(instance, hook):
    webhook = hook()
    cursor, _ = tick(instance, webhook.url)  # first deploy: starts from now
    instance.add_dynamic_partitions("raster_sources", ["everest"])
    result = dg.materialize([elevation, elevation_is_plausible], partition_key="everest", instance=instance, raise_on_error=False)
    assert not result.success
    cursor, _ = tick(instance, webhook.url, cursor)
    # the blocking check also failed the run: one alert for each, then nothing more
    assert [a["alert"]["kind"] for a in webhook.received] == ["asset_check", "run_failure"]
    alert = webhook.received[0]["alert"]
    assert (alert["asset"], alert["partition"], alert["check"]) == ("elevation", "everest", "elevation_is_plausible")
    assert "above Everest" in webhook.received[0]["text"] and alert["severity"] == "ERROR"
    assert "everest" in webhook.received[1]["text"]
    tick(instance, webhook.url, tick(instance, webhook.url, cursor)[0])
    assert len(webhook.received) == 2


def test_first_tick_starts_from_now_unless_history_is_asked_for(instance, hook):
    fail_runs(instance, 2)
    webhook = hook()
    _, result = tick(instance, webhook.url)
    assert "first tick" in result.skip_message
    tick(instance, webhook.url)
    assert webhook.received == []
    fail_runs(instance, 1)
    tick(instance, webhook.url)
    assert [a["alert"]["kind"] for a in webhook.received] == ["run_failure"]

    with dg.instance_for_test() as fresh:
        fail_runs(fresh, 2)
        history = hook()
        tick(fresh, history.url, start_from="beginning")
        assert len(set(history.ids())) == len(history.received) == 2


def test_a_sink_that_fails_then_recovers_delivers_each_alert_once_and_blocks_nothing(instance, hook):
    webhook = hook(statuses=[503, 429])  # the first two posts fail, the rest succeed
    tick(instance, webhook.url)
    fail_runs(instance, 3)
    _, result = tick(instance, webhook.url, first_retry_seconds=0)
    # the third alert was not held up behind the two that failed
    assert len(webhook.received) == 1 and "2 to retry with backoff" in result.skip_message
    _, result = tick(instance, webhook.url, first_retry_seconds=0)
    assert len(webhook.received) == 3 and len(set(webhook.ids())) == 3
    tick(instance, webhook.url, first_retry_seconds=0)
    assert webhook.attempts == 5 and len(webhook.received) == 3


def test_a_refusing_sink_turns_alerts_into_dead_letters_and_later_alerts_still_go(instance, hook):
    webhook = hook(statuses=[404])
    tick(instance, webhook.url)
    fail_runs(instance, 1)
    _, result = tick(instance, webhook.url)
    assert "1 dead letter(s)" in result.skip_message and "HTTP 404" in result.skip_message
    fail_runs(instance, 1)
    tick(instance, webhook.url)
    assert len(webhook.received) == 1
    ledger = AlertLedger(InstanceKeyValueStore(instance))
    assert [d["id"] for d in ledger.dead_letters()] != webhook.ids() and ledger.pending() == []


def test_retries_back_off_then_give_up_on_one_sink_while_the_other_delivers():
    clock = [1000.0]
    logged, attempts = [], []

    def flaky(alert):
        attempts.append(clock[0])
        raise ConnectionError("refused")

    ledger = AlertLedger(MemoryStore())
    ledger.enqueue([{"id": "a", "text": "x"}], ["log", "webhook"], {"check": 1, "run": 0})
    sinks = [Sink("log", logged.append), Sink("webhook", flaky)]
    policy = AlertSinksResource(max_attempts=3, first_retry_seconds=60).policy()
    for _ in range(6):
        ledger.deliver(sinks, policy, clock=lambda: clock[0])
        clock[0] += 50
    assert len(logged) == 1
    # attempts at t=1000, then after 60 s (t=1100), then after 120 s more (t=1250 or later): then dead
    assert attempts == [1000.0, 1100.0, 1250.0]
    assert ledger.pending() == [] and ledger.dead_letters()[0]["sinks"] == {"webhook": "ConnectionError: refused"}


KILLED_TICK = """
import logging, sys
import dagster as dg
from gnt_assets.resources.alerts import AlertSinksResource
from gnt_assets.sensors.check_failure_alerts import alert_tick
with dg.DagsterInstance.from_config(sys.argv[1]) as instance:
    alert_tick(instance, AlertSinksResource(webhook_url=sys.argv[2]), logging.getLogger("tick"))
"""


def test_a_tick_killed_after_two_of_five_sends_resends_nothing(tmp_path, hook):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        "event_log_storage:\n  module: dagster.core.storage.event_log\n  class: ConsolidatedSqliteEventLogStorage\n"
        f"  config:\n    base_dir: {tmp_path / 'event_log'}\n"
    )
    webhook = hook(hold_from=2)  # the third post hangs until the tick is killed
    with dg.DagsterInstance.from_config(str(home)) as instance:
        tick(instance, webhook.url)
        fail_runs(instance, 5)
        env = {**os.environ, "DAGSTER_HOME": str(home)}
        process = subprocess.Popen([sys.executable, "-c", KILLED_TICK, str(home), webhook.url], env=env)
        try:
            assert webhook.held.wait(60), "the killed tick never reached its third send"
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert len(webhook.received) == 2
        webhook.hold_from = None
        webhook.release.set()
        tick(instance, webhook.url)
        tick(instance, webhook.url)
    assert len(webhook.received) == 5 and len(set(webhook.ids())) == 5


def store_failed_evaluations(instance, assets, run_ids, count):
    """``count`` failed check evaluations, stored as the event log stores them one by one (an event row, a
    check-execution row pointing at it), but in one transaction and from one serialized template per asset."""
    now = time.time()
    when = datetime.fromtimestamp(now, UTC).replace(tzinfo=None)
    templates = {}
    for asset in assets:
        evaluation = dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(asset), check_name="values_are_in_range", passed=False,
            severity=dg.AssetCheckSeverity.ERROR, partition="day-PARTITION", description="T2 below 220 K",
        )
        event = DagsterEvent(event_type_value=DagsterEventType.ASSET_CHECK_EVALUATION.value, job_name="backfill",
                             event_specific_data=evaluation)
        entry = EventLogEntry(error_info=None, level=40, user_message="", run_id="RUN-ID", timestamp=now, dagster_event=event)
        templates[asset] = serialize_value(entry)
    rows = []
    for i in range(count):
        asset, run_id = assets[i % len(assets)], run_ids[(i // len(assets)) % len(run_ids)]
        partition = f"day-{i:05d}"
        text = templates[asset].replace("day-PARTITION", partition).replace("RUN-ID", run_id)
        rows.append(dict(run_id=run_id, event=text, dagster_event_type=DagsterEventType.ASSET_CHECK_EVALUATION.value,
                         timestamp=when, step_key=None, asset_key=dg.AssetKey(asset).to_string(), partition=partition))
    events = SqlEventLogStorageTable
    with instance.event_log_storage.index_connection() as conn:
        first = conn.execute(db.select(db.func.max(events.c.id))).scalar() or 0
        conn.execute(events.insert(), rows)
        ids = [row[0] for row in conn.execute(db.select(events.c.id).where(events.c.id > first).order_by(events.c.id))]
        conn.execute(AssetCheckExecutionsTable.insert(), [
            dict(asset_key=row["asset_key"], check_name="values_are_in_range", run_id=row["run_id"],
                 execution_status="FAILED", evaluation_event=row["event"], evaluation_event_timestamp=when,
                 evaluation_event_storage_id=event_id, partition=row["partition"])
            for row, event_id in zip(rows, ids, strict=True)
        ])


def test_twenty_thousand_failing_evaluations_clear_in_a_few_ticks_as_digests(instance, hook):
    webhook = hook()
    tick(instance, webhook.url)
    store_failed_evaluations(instance, ["conus404_daily", "conus404_summary"], ["run-a", "run-b"], 20_000)
    ticks = 0
    while ticks < 5:
        ticks += 1
        _, result = tick(instance, webhook.url)
        if "read 0 failed" in result.skip_message:
            break
    assert ticks <= 3
    digests = [body["alert"] for body in webhook.received]
    assert sum(d["failures"] for d in digests) == 20_000
    # one digest per asset and run per tick that read them: 4 pairs, split at most once by the batch size
    assert 4 <= len(digests) <= 8 and len(set(webhook.ids())) == len(digests)
    assert "T2 below 220 K" in digests[0]["text"] and "and " in digests[0]["text"]


def test_webhooks_must_be_https_except_to_loopback():
    for url in ("https://hooks.slack.com/services/T/B/X", "http://127.0.0.1:8080/h", "http://localhost/h", "http://[::1]/h"):
        assert validate_webhook_url(url) == url
    for url in ("http://hooks.example.com/x", "ftp://127.0.0.1/x", "file:///etc/passwd", "hooks.slack.com/x"):
        with pytest.raises(InputError, match="GNT_ALERT_WEBHOOK_URL"):
            validate_webhook_url(url)
    with pytest.raises(InputError, match="https"):
        AlertSinksResource(webhook_url="http://example.com/hook").sinks()


def test_slack_payload_is_an_incoming_webhook_message(instance, hook):
    assert payload({"id": "x", "text": "ERROR: run r failed"}, "slack") == {
        "text": "ERROR: run r failed",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "ERROR: run r failed"}}],
    }
    webhook = hook()
    tick(instance, webhook.url, payload_format="slack")
    fail_runs(instance, 1)
    webhook_bodies = webhook.received
    tick(instance, webhook.url, payload_format="slack")
    assert set(webhook_bodies[0]) == {"text", "blocks"} and "failed" in webhook_bodies[0]["text"]


def test_a_digest_counts_checks_and_takes_the_worst_severity():
    failures = [
        CheckFailure(storage_id=7, run_id="r", asset="tiles", check="tiles_are_present", partition="ZAF|2020", severity="WARN"),
        CheckFailure(storage_id=5, run_id="r", asset="tiles", check="stores_are_complete", partition="ZAF|2021",
                     severity="ERROR", description="region 3 has no marker"),
        CheckFailure(storage_id=9, run_id="r", asset="tiles", check="tiles_are_present", partition="ZAF|2021", severity="WARN"),
        CheckFailure(storage_id=6, run_id="s", asset="tiles", check="tiles_are_present", partition=None, severity="WARN"),
    ]
    first, second = check_digests(failures)
    assert first["id"] == "check|tiles|r|5" and first["severity"] == "ERROR" and first["failures"] == 3
    assert first["checks"] == {"stores_are_complete": 1, "tiles_are_present": 2}
    assert first["partitions"] == ["ZAF|2021", "ZAF|2020"] and first["partition"] is None
    assert first["text"].endswith("First: region 3 has no marker")
    assert (second["id"], second["severity"], second["partitions"]) == ("check|tiles|s|6", "WARN", [])
