"""When to retry an HTTP call to a model server, and how long to wait first.

Retryable: 408/409/425/429 and 5xx statuses, timeouts, refused or reset connections and bodies that
are not the JSON we expect. Anything else (400, 401, 404, ...) is the caller's mistake: retrying would
only repeat it, so it fails at once.

The wait is tenacity's exponential backoff with jitter, but never shorter than the server's
``Retry-After`` (seconds or an HTTP date), which is honoured up to `max_retry_after_s`. When the failed
endpoint is down and another endpoint of the fleet is live, the retry goes there without waiting.
"""

from __future__ import annotations

import email.utils
import time
from typing import TYPE_CHECKING, Callable

from tenacity import RetryCallState, wait_exponential, wait_random
from tenacity.wait import wait_base

if TYPE_CHECKING:
    from .fleet import Endpoint

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUS or status >= 500


class TransientHTTPError(Exception):
    """A failure worth retrying. The message names what happened and where, never a credential."""

    def __init__(
        self,
        what: str,
        endpoint: Endpoint,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        endpoint_down: bool = False,
    ):
        super().__init__(f"{what} from {endpoint.label}")
        self.what = what
        self.endpoint = endpoint
        self.status = status
        self.retry_after = retry_after
        """Seconds the server asked us to wait (Retry-After), if it said."""
        self.endpoint_down = endpoint_down


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    Returns None when absent or unparseable; never negative.
    """
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT; a naive parse means it lacked the zone
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


class WaitForServer(wait_base):
    """Exponential backoff with jitter, stretched to honour Retry-After, skipped to fail over."""

    def __init__(
        self,
        initial_s: float,
        max_s: float,
        max_retry_after_s: float,
        has_live_alternative: Callable[[Endpoint], bool],
    ):
        self._backoff = wait_exponential(multiplier=initial_s, max=max_s) + wait_random(0, initial_s)
        self._max_retry_after_s = max_retry_after_s
        self._has_live_alternative = has_live_alternative

    def __call__(self, retry_state: RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, TransientHTTPError):
            if error.endpoint_down and self._has_live_alternative(error.endpoint):
                return 0.0
            if error.retry_after is not None:
                return max(self._backoff(retry_state), min(error.retry_after, self._max_retry_after_s))
        return self._backoff(retry_state)
