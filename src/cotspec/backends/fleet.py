"""Spread HTTP requests over several servers of the same model, routing around dead ones.

A fleet is a list of base URLs (say 8 vLLM servers). Each request goes to the live endpoint with the
fewest requests in flight (round-robin among ties). An endpoint that refuses connections, or fails
`failures_before_cooldown` times in a row, is left alone for `cooldown_s`; after that a single probe
request is let through (a half-open circuit breaker): success puts it back in rotation, failure starts
another cool-down. If every endpoint is cooling down, the one that recovers first is tried anyway, so
a run never stalls on routing alone; the retry policy decides when to give up.

All methods run on one event loop thread: no locking.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)


@dataclass
class Endpoint:
    """One server of the fleet and what we know about its health."""

    base_url: str
    """API root, e.g. ``http://10.0.0.7:8000/v1`` (request paths are appended to it)."""
    label: str
    """``host:port`` for messages: never the userinfo part of the URL."""
    in_flight: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0
    """Monotonic time at which a cool-down ends; 0 when the endpoint is healthy."""
    probing: bool = False
    """A single request is testing whether a cooled-down endpoint is back."""
    refused: bool = False
    """Its last request could not connect (nothing listens there, or the server died)."""


def endpoint_label(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


class EndpointPool:
    """Least-in-flight routing with cool-down of failing endpoints."""

    def __init__(
        self,
        base_urls: Sequence[str],
        cooldown_s: float,
        failures_before_cooldown: int,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.endpoints = [Endpoint(url, endpoint_label(url)) for url in base_urls]
        self._cooldown_s = cooldown_s
        self._failures_before_cooldown = failures_before_cooldown
        self._clock = clock
        self._next = 0  # round-robin start for tie-breaking

    def _available(self, endpoint: Endpoint, now: float) -> bool:
        if endpoint.down_until == 0.0:
            return True
        # Cool-down over: let exactly one probe through.
        return now >= endpoint.down_until and not endpoint.probing

    def acquire(self) -> Endpoint:
        """The endpoint the next request should go to (its in-flight count is incremented)."""
        now = self._clock()
        count = len(self.endpoints)
        rotated = [self.endpoints[(self._next + i) % count] for i in range(count)]
        self._next = (self._next + 1) % count
        live = [e for e in rotated if self._available(e, now)]
        if live:
            chosen = min(live, key=lambda e: e.in_flight)  # min keeps the first of ties: round-robin
        else:
            chosen = min(rotated, key=lambda e: e.down_until)
        if chosen.down_until:
            chosen.probing = True
        chosen.in_flight += 1
        return chosen

    def release(self, endpoint: Endpoint, *, ok: bool, down: bool = False, refused: bool = False) -> None:
        """Record how the request ended.

        ok: the server answered (any HTTP status that is not a server-side failure).
        down: the server is unreachable (connection refused or timed out): cool it down at once.
        refused: the connection itself failed (refused, no route, unknown host), not merely slow.
        """
        endpoint.in_flight -= 1
        endpoint.probing = False
        endpoint.refused = refused
        if ok:
            if endpoint.down_until:
                logger.warning("endpoint %s is back; routing requests to it again", endpoint.label)
            endpoint.consecutive_failures = 0
            endpoint.down_until = 0.0
            return
        endpoint.consecutive_failures += 1
        if down or endpoint.consecutive_failures >= self._failures_before_cooldown:
            if not endpoint.down_until or self._clock() >= endpoint.down_until:
                logger.warning(
                    "endpoint %s failing (%d in a row); routing around it for %.0f s",
                    endpoint.label,
                    endpoint.consecutive_failures,
                    self._cooldown_s,
                )
            endpoint.down_until = self._clock() + self._cooldown_s

    def all_refused(self) -> bool:
        """Whether every endpoint refused its last connection: no server is there to wait for."""
        return all(e.refused for e in self.endpoints)

    def has_live_alternative(self, endpoint: Endpoint) -> bool:
        """Whether another endpoint could take a request now (then a retry need not wait)."""
        now = self._clock()
        return any(e is not endpoint and self._available(e, now) for e in self.endpoints)
