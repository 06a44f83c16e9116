"""The report of days that failed for good (the seed's ``ultimate_failures.json``).

Which errors are retried first is ``core.errors.is_transient``: network errors, timeouts,
throttling (429) and server errors (5xx) from requests/urllib3 (STAC, SAS token),
aiohttp/azure-core (adlfs) or the OS; a refused token, a day outside the window or a
failed validation would fail again the same way, so it is not retried.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass


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
