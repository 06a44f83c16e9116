"""Where alerts go (DESIGN section 5): always the run log, and a webhook when configured."""

from __future__ import annotations

import json
import logging
import urllib.request

import dagster as dg
from pydantic import Field

logger = logging.getLogger("gnt_assets.alerts")


class AlertSinksResource(dg.ConfigurableResource):
    """Delivers one alert (a JSON-able dict) to every configured sink."""

    webhook_url: str | None = Field(
        default=None, description="POST target for alerts (Slack-compatible); set with GNT_ALERT_WEBHOOK_URL."
    )
    timeout_seconds: float = 10.0

    def send(self, alert: dict, log: logging.Logger | None = None) -> None:
        (log or logger).warning("gnt alert: %s", alert.get("text", alert))
        if not self.webhook_url:
            return
        body = json.dumps({"text": alert.get("text", ""), "alert": alert}).encode("utf-8")
        request = urllib.request.Request(
            self.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
            response.read()
