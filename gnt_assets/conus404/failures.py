"""Which source errors are worth retrying, and the report of days that failed for good.

Transient: network errors, timeouts, throttling (429) and server errors (5xx),
from requests/urllib3 (STAC, SAS token), aiohttp/azure-core (adlfs) or the OS.
Everything else (a refused token, a day outside the window, a failed
validation) would fail again the same way, so it is not retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def http_status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    for candidate in (getattr(error, "status_code", None), getattr(error, "status", None),
                      getattr(response, "status_code", None), getattr(response, "status", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def is_transient(error: BaseException) -> bool:
    """True for errors a later attempt may not see; walks the ``__cause__`` chain."""
    import aiohttp
    import requests
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError

    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 10:
        status = http_status(current)
        if status is not None:
            return status in TRANSIENT_STATUS
        if isinstance(current, (TimeoutError, ConnectionError, requests.ConnectionError, requests.Timeout,
                                aiohttp.ClientConnectionError, ServiceRequestError, ServiceResponseError)):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


@dataclass(frozen=True)
class DayFailure:
    day: str
    error: str
    failed_at: str  # ISO 8601 UTC
    run_id: str


def report_document(failures: Iterable[DayFailure]) -> bytes:
    """The seed's ``ultimate_failures.json``: days whose latest run failed after all retries."""
    rows = sorted(failures, key=lambda f: f.day)
    return json.dumps({"count": len(rows), "failures": [asdict(f) for f in rows]}, indent=2).encode()
