"""Alert messages and their delivery, without Dagster (DESIGN section 5).

An alert is a JSON-able dict with a stable ``id``. Failed check evaluations of one asset in one run
are coalesced into one digest (``check_digests``); each failed run is one alert. ``AlertLedger``
keeps, in a small key-value store, which alerts are queued, sent or undeliverable (dead letters), so
that an alert recorded as sent is never sent again, whatever happens to the caller afterwards, and a
failing sink is retried with exponential backoff per alert without holding up the others.

The one gap no ledger closes: a process killed after a sink accepted an alert but before the ledger
recorded it sends that alert again on the next attempt (at least once there, exactly once elsewhere).
"""

from __future__ import annotations

import ipaddress
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gnt_assets.core.errors import TRANSIENT_STATUS, InputError, TransientError

PAYLOAD_FORMATS = ("json", "slack")
SEVERITY_ORDER = {"WARN": 0, "ERROR": 1}
DIGEST_PARTITIONS_SHOWN = 10
DEAD_LETTERS_KEPT = 500


@dataclass(frozen=True)
class CheckFailure:
    """One failed asset-check evaluation as read from the event log."""

    storage_id: int
    run_id: str
    asset: str
    check: str
    partition: str | None
    severity: str
    description: str = ""
    metadata: dict = field(default_factory=dict)  # the check's metadata (as text), kept for the first of a digest


def check_digests(failures: Iterable[CheckFailure]) -> list[dict]:
    """One alert per (asset, run): counts per check, worst severity, the first partitions.

    The id is the asset, the run and the first evaluation's storage id, so the same batch of
    failures always gives the same ids (a repeated tick finds them in the ledger)."""
    groups: dict[tuple[str, str], list[CheckFailure]] = {}
    for failure in sorted(failures, key=lambda f: f.storage_id):
        groups.setdefault((failure.asset, failure.run_id), []).append(failure)
    digests = []
    for (asset, run_id), members in groups.items():
        severity = max((m.severity for m in members), key=lambda s: SEVERITY_ORDER.get(s, 1))
        checks: dict[str, int] = {}
        for member in members:
            checks[member.check] = checks.get(member.check, 0) + 1
        partitions = list(dict.fromkeys(m.partition for m in members if m.partition))
        shown = ", ".join(partitions[:DIGEST_PARTITIONS_SHOWN])
        if len(partitions) > DIGEST_PARTITIONS_SHOWN:
            shown += f" and {len(partitions) - DIGEST_PARTITIONS_SHOWN} more"
        what = "; ".join(f"{name} x{count}" if count > 1 else name for name, count in checks.items())
        where = f" on {shown}" if shown else ""
        first = members[0].description
        metadata: dict[str, dict] = {}  # per check: the metadata of its first failure
        for member in members:
            if member.metadata and member.check not in metadata:
                metadata[member.check] = member.metadata
        text = f"{severity}: {len(members)} failed check(s) on {asset} in run {run_id}{where}: {what}."
        if first:
            text += f" First: {first}"
        digests.append({
            "id": f"check|{asset}|{run_id}|{members[0].storage_id}",
            "kind": "asset_check",
            "severity": severity,
            "asset": asset,
            "run_id": run_id,
            "checks": checks,
            "failures": len(members),
            "partition": partitions[0] if len(partitions) == 1 else None,
            "partitions": partitions[:DIGEST_PARTITIONS_SHOWN],
            "check": next(iter(checks)) if len(checks) == 1 else None,
            "metadata": metadata,  # check name -> metadata of its first failure
            "text": text,
        })
    return digests


def run_failure_alert(run_id: str, job: str, partition: str | None, message: str) -> dict:
    where = f" [{partition}]" if partition else ""
    return {
        "id": f"run|{run_id}",
        "kind": "run_failure",
        "severity": "ERROR",
        "job": job,
        "partition": partition,
        "run_id": run_id,
        "text": f"ERROR: run {run_id} of {job}{where} failed. {message}".strip(),
    }


def validate_webhook_url(url: str, setting: str = "GNT_ALERT_WEBHOOK_URL") -> str:
    """The URL when it is https, or http to a loopback address; otherwise an ``InputError``."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" and parsed.hostname:
        return url
    if parsed.scheme == "http" and parsed.hostname:
        host = parsed.hostname
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = host == "localhost"
        if loopback:
            return url
    raise InputError(
        f"{setting}={url!r} is not an https URL (http is accepted only to 127.0.0.1, ::1 or localhost); "
        "alerts carry run details, so set an https webhook"
    )


def payload(alert: Mapping, payload_format: str) -> dict:
    """The body POSTed for ``alert``: ours (``text`` plus the alert) or a Slack incoming-webhook message."""
    if payload_format == "slack":
        return {"text": alert["text"], "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": alert["text"]}}]}
    if payload_format == "json":
        return {"text": alert["text"], "alert": dict(alert)}
    raise InputError(f"alert payload format {payload_format!r} is not one of {', '.join(PAYLOAD_FORMATS)}")


def post_json(url: str, body: dict, timeout: float) -> None:
    """POST ``body``; 2xx is delivered, 408/429/5xx and network errors are ``TransientError``,
    any other status an ``InputError`` (another attempt would be refused the same way)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode("utf-8"), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as error:
        if error.code in TRANSIENT_STATUS:
            raise TransientError(f"alert webhook answered HTTP {error.code}") from error
        raise InputError(f"alert webhook answered HTTP {error.code}: check GNT_ALERT_WEBHOOK_URL") from error
    except (urllib.error.URLError, OSError) as error:
        raise TransientError(f"alert webhook unreachable: {error}") from error


@dataclass(frozen=True)
class Sink:
    """A named destination: ``deliver(alert)`` returns on success and raises on failure."""

    name: str
    deliver: Callable[[dict], None]


@dataclass
class DeliveryPolicy:
    max_attempts: int = 6
    first_delay_seconds: float = 60.0
    max_delay_seconds: float = 3600.0
    tick_budget_seconds: float = 40.0

    def delay(self, attempts: int) -> float:
        return min(self.first_delay_seconds * 2 ** (attempts - 1), self.max_delay_seconds)


class KeyValueStore:
    """What the ledger needs: read some keys, write some pairs (Dagster's instance key-value table)."""

    def get(self, keys: set[str]) -> Mapping[str, str]:  # pragma: no cover - interface
        raise NotImplementedError

    def set(self, pairs: Mapping[str, str]) -> None:  # pragma: no cover - interface
        """Write the pairs; new keys before existing ones, so a reader never sees a cursor past a missing alert."""
        raise NotImplementedError


class MemoryStore(KeyValueStore):
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def get(self, keys: set[str]) -> Mapping[str, str]:
        return {k: self.values[k] for k in keys if k in self.values}

    def set(self, pairs: Mapping[str, str]) -> None:
        self.values.update(pairs)


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    retrying: list[str] = field(default_factory=list)
    dead: list[str] = field(default_factory=list)
    deferred: int = 0


class AlertLedger:
    """Queued, sent and dead alerts under ``prefix`` in a key-value store.

    Keys: ``{prefix}cursor`` (JSON positions in the event log), ``{prefix}pending`` (JSON list of
    queued ids, oldest first), ``{prefix}dead`` (the last dead letters) and ``{prefix}alert:{id}``
    (one alert's state: the alert, and per sink ``sent`` or attempts, next attempt and last error).
    """

    def __init__(self, store: KeyValueStore, prefix: str = "gnt_alerts:") -> None:
        self.store = store
        self.prefix = prefix

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def _alert_key(self, alert_id: str) -> str:
        return self._key(f"alert:{alert_id}")

    def _read_json(self, name: str, default):
        value = self.store.get({self._key(name)}).get(self._key(name))
        return json.loads(value) if value else default

    def cursor(self) -> dict | None:
        return self._read_json("cursor", None)

    def pending(self) -> list[str]:
        return self._read_json("pending", [])

    def dead_letters(self) -> list[dict]:
        return self._read_json("dead", [])

    def states(self, alert_ids: Iterable[str]) -> dict[str, dict]:
        keys = {self._alert_key(i): i for i in alert_ids}
        found = self.store.get(set(keys)) if keys else {}
        return {keys[k]: json.loads(v) for k, v in found.items()}

    def enqueue(self, alerts: Sequence[dict], sinks: Sequence[str], cursor: dict) -> int:
        """Queue the alerts not seen before and move the cursor, in one write; returns how many were new."""
        known = self.states(a["id"] for a in alerts)
        pending = self.pending()
        pairs = {}
        for alert in alerts:
            if alert["id"] in pending:
                continue
            state = known.get(alert["id"])
            if state is not None:
                # queued by a write that did not reach the pending list: queue it again unless delivered
                if not all(s.get("sent") or s.get("dead") for s in state["sinks"].values()):
                    pending.append(alert["id"])
                continue
            state = {"alert": alert, "sinks": {name: {"attempts": 0, "next_at": 0.0} for name in sinks}}
            pairs[self._alert_key(alert["id"])] = json.dumps(state)
            pending.append(alert["id"])
        new = len(pairs)
        pairs[self._key("pending")] = json.dumps(pending)
        pairs[self._key("cursor")] = json.dumps(cursor)
        self.store.set(pairs)
        return new

    def deliver(
        self, sinks: Sequence[Sink], policy: DeliveryPolicy, clock: Callable[[], float] = time.time
    ) -> DeliveryReport:
        """Offer each queued alert to each sink that still owes it and is due; records every outcome
        before the next send. Stops starting sends once ``policy.tick_budget_seconds`` have passed."""
        report = DeliveryReport()
        started = clock()
        pending = self.pending()
        states = self.states(pending)
        by_name = {sink.name: sink for sink in sinks}
        still_pending = []
        dead_letters = []
        for alert_id in pending:
            state = states.get(alert_id)
            if state is None:
                continue
            if clock() - started > policy.tick_budget_seconds:
                still_pending.append(alert_id)
                report.deferred += 1
                continue
            changed = False
            for name, sink_state in state["sinks"].items():
                if sink_state.get("sent") or sink_state.get("dead"):
                    continue
                sink = by_name.get(name)
                now = clock()
                if sink is None or sink_state["next_at"] > now:
                    continue
                changed = True
                try:
                    sink.deliver(state["alert"])
                except Exception as error:  # a failing sink is recorded, never raised: later alerts go on
                    sink_state["attempts"] += 1
                    sink_state["error"] = f"{type(error).__name__}: {error}"
                    if isinstance(error, InputError) or sink_state["attempts"] >= policy.max_attempts:
                        sink_state["dead"] = True
                    else:
                        sink_state["next_at"] = now + policy.delay(sink_state["attempts"])
                else:
                    sink_state["sent"] = True
                    sink_state["attempts"] += 1
                # each outcome is durable before the next send: a tick killed here resends nothing recorded
                self.store.set({self._alert_key(alert_id): json.dumps(state)})
            outcomes = state["sinks"].values()
            if all(s.get("sent") or s.get("dead") for s in outcomes):
                if any(s.get("dead") for s in outcomes):
                    report.dead.append(alert_id)
                    dead_letters.append({
                        "id": alert_id,
                        "text": state["alert"]["text"],
                        "sinks": {n: s.get("error", "") for n, s in state["sinks"].items() if s.get("dead")},
                    })
                elif changed:
                    report.sent.append(alert_id)
            else:
                still_pending.append(alert_id)
                if changed:
                    report.retrying.append(alert_id)
        pairs = {self._key("pending"): json.dumps(still_pending)}
        if dead_letters:
            pairs[self._key("dead")] = json.dumps((self.dead_letters() + dead_letters)[-DEAD_LETTERS_KEPT:])
        self.store.set(pairs)
        return report
