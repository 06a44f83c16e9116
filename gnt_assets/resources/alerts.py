"""Where alerts go (DESIGN section 5): always the log, and a webhook when configured.

The webhook must be https (http only to a loopback address); ``payload_format="slack"`` posts a
Slack incoming-webhook message instead of our JSON. Delivery, retries and the ledger are in
``gnt_assets.core.alerts``; this resource only says which sinks exist and how patient to be.
"""

from __future__ import annotations

import logging

import dagster as dg
from pydantic import Field

from gnt_assets.core.alerts import PAYLOAD_FORMATS, DeliveryPolicy, Sink, payload, post_json, validate_webhook_url
from gnt_assets.core.errors import InputError

logger = logging.getLogger("gnt_assets.alerts")


class AlertSinksResource(dg.ConfigurableResource):
    """The alert sinks and their delivery policy."""

    webhook_url: str | None = Field(
        default=None, description="https POST target for alerts; set with GNT_ALERT_WEBHOOK_URL."
    )
    payload_format: str = Field(default="json", description="json (text + alert) or slack (incoming-webhook message).")
    timeout_seconds: float = 5.0
    max_attempts: int = Field(default=6, description="Attempts per alert and sink before it becomes a dead letter.")
    first_retry_seconds: float = Field(default=60.0, description="Delay before the second attempt; doubles after each.")
    tick_budget_seconds: float = Field(default=40.0, description="No new send starts after this long in one sensor tick.")
    start_from: str = Field(
        default="now", description="now: a first tick skips history; beginning: alert on everything recorded."
    )

    def policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            max_attempts=self.max_attempts,
            first_delay_seconds=self.first_retry_seconds,
            tick_budget_seconds=self.tick_budget_seconds,
        )

    def sinks(self, log: logging.Logger | None = None) -> list[Sink]:
        if self.start_from not in ("now", "beginning"):
            raise InputError(f"alerts start_from={self.start_from!r} is not 'now' or 'beginning'")
        if self.payload_format not in PAYLOAD_FORMATS:
            raise InputError(f"alerts payload_format={self.payload_format!r} is not one of {', '.join(PAYLOAD_FORMATS)}")
        target = log or logger
        sinks = [Sink("log", lambda alert: target.warning("gnt alert: %s", alert["text"]))]
        if self.webhook_url:
            url = validate_webhook_url(self.webhook_url)
            sinks.append(Sink("webhook", lambda alert: post_json(url, payload(alert, self.payload_format), self.timeout_seconds)))
        return sinks

    def send(self, alert: dict, log: logging.Logger | None = None) -> None:
        """Deliver one alert to every sink now, raising on the first failure (no ledger: for callers outside the sensor)."""
        for sink in self.sinks(log):
            sink.deliver(alert)
