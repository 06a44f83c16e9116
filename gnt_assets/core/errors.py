"""One base for every error the project raises on purpose, in two families that decide retries.

- ``InputError``: bad input or configuration (a file, a setting, a polygon). Another attempt fails
  the same way, so it is never retried; the message names the file or setting, the problem and the fix.
- ``TransientError``: a service or I/O failure a later attempt may not meet (timeouts, throttling,
  dropped connections). Retried with backoff.

``is_transient`` is the one classifier every retry policy uses; like rioxarray's ``exceptions.py``,
the classes keep the standard bases (``ValueError``, ``RuntimeError``) callers already catch.
"""

from __future__ import annotations

import sys

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class GntError(Exception):
    """Base of every error GNT Assets raises on purpose."""


class InputError(GntError, ValueError):
    """Bad input or configuration: never retried."""


class TransientError(GntError, RuntimeError):
    """A service or I/O failure worth another attempt, with backoff."""


def http_status(error: BaseException) -> int | None:
    """The HTTP status an error carries (requests, aiohttp, azure-core, googleapiclient), if any."""
    response = getattr(error, "response", None)
    resp = getattr(error, "resp", None)  # googleapiclient.errors.HttpError
    for candidate in (getattr(error, "status_code", None), getattr(error, "status", None),
                      getattr(response, "status_code", None), getattr(response, "status", None),
                      getattr(resp, "status", None)):
        if isinstance(candidate, int):
            return candidate
    return None


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout classes of the HTTP clients already imported (never imports one)."""
    found: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for module, names in (("requests", ("ConnectionError", "Timeout")), ("aiohttp", ("ClientConnectionError",)),
                          ("azure.core.exceptions", ("ServiceRequestError", "ServiceResponseError")),
                          ("urllib3.exceptions", ("ProtocolError", "TimeoutError"))):
        loaded = sys.modules.get(module)
        found += [getattr(loaded, name) for name in names if loaded is not None and hasattr(loaded, name)]
    return tuple(found)


def is_transient(error: BaseException) -> bool:
    """True when a later attempt may succeed; walks the ``__cause__`` chain. Our own classes decide
    first (``InputError`` never, ``TransientError`` always), then HTTP status, then network errors."""
    network = _network_errors()
    current: BaseException | None = error
    for _ in range(10):
        if current is None:
            return False
        if isinstance(current, InputError):
            return False
        if isinstance(current, TransientError):
            return True
        status = http_status(current)
        if status is not None:
            return status in TRANSIENT_STATUS
        if isinstance(current, network):
            return True
        current = current.__cause__ or current.__context__
    return False
