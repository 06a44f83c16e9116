"""The retry rule every asset shares, built on ``core.errors``: transient errors are retried with
backoff by the asset's retry policy; bad input or configuration fails at once, naming the cause."""

from __future__ import annotations

import dagster as dg

from gnt_assets.core.errors import is_transient

TRANSIENT_RETRY = dg.RetryPolicy(max_retries=4, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)


def failure_for(error: BaseException, message: str | None = None) -> BaseException:
    """What to raise for ``error``: the error itself when transient (the retry policy retries it),
    else a ``dg.Failure`` that skips the retries and says ``message`` (default: the error's text)."""
    if is_transient(error):
        return error
    return dg.Failure(description=message or f"{type(error).__name__}: {error}", allow_retries=False)
