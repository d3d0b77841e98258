"""A fault-injecting HTTP proxy for tests: loopback only, in front of a real model server.

    with FaultProxy("http://127.0.0.1:8000", fault_rate=0.2, seed=0) as proxy:
        backend = OpenAIBackend.from_options(proxy.base_url)   # http://127.0.0.1:<port>/v1
        ...
        proxy.stats()  # or GET {proxy.origin}/__proxy_stats from another process

On a seeded random fraction of requests (plus any `script`ed ones first, for determinism) it injects:

- ``rate_limit``: 429 with ``Retry-After`` (never forwarded);
- ``server_error``: 500 (never forwarded);
- ``garbage``: 200 with a truncated JSON body (never forwarded);
- ``reset``: forwarded, then the connection is reset (RST) half-way through the response body;
- ``slow``: forwarded, then the response is held back `slow_s` seconds (beyond the client's timeout
  when the test sets it so), or until the client hangs up.

`upstream_calls` counts requests that reached the real server (compute spent); `delivered` counts
upstream responses passed back whole to a client still listening; `abandoned` counts upstream
responses whose client had already hung up (it timed out: on a slow fault, or waiting in the server's
queue). So ``upstream_calls == delivered + abandoned + faults["reset"]`` always holds.

Every request is logged with a digest of its body, so a test can match a retry to the request it
repeats. Bounded: it answers at most `max_requests` requests and shuts itself down after
`lifetime_s` seconds even if the test forgets to.

Speaks just enough HTTP/1.1 for httpx clients: keep-alive, Content-Length bodies (no chunked uploads).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import httpx

FAULT_KINDS = ("rate_limit", "server_error", "reset", "slow", "garbage")
STATS_PATH = "/__proxy_stats"


@dataclass(frozen=True)
class ProxyEvent:
    arrived: float
    """time.monotonic() when the request was read."""
    answered: float
    """time.monotonic() when the proxy had written its answer (or decided to hold it back, for slow)."""
    path: str
    body_digest: str
    """Identifies a request body: a retry repeats the body (seed included) byte for byte."""
    authorized: bool
    """The request carried an ``Authorization: Bearer ...`` header (its value is not kept)."""
    fault: str | None
    retry_after_s: float | None = None


@dataclass
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    arrived: float


@dataclass
class ProxyStats:
    requests: int = 0
    upstream_calls: int = 0
    delivered: int = 0
    abandoned: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "upstream_calls": self.upstream_calls,
            "delivered": self.delivered,
            "abandoned": self.abandoned,
            "faults": dict(self.faults),
        }


_REASONS = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
            503: "Service Unavailable"}


def _response_head(status: int, headers: dict[str, str], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        fault_rate: float = 0.2,
        seed: int = 0,
        kinds: Sequence[str] = FAULT_KINDS,
        script: Sequence[str | None] = (),
        retry_after_s: int = 1,
        slow_s: float = 2.0,
        max_requests: int = 2000,
        lifetime_s: float = 600.0,
    ):
        unknown = (set(kinds) | {k for k in script if k}) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.upstream = upstream.rstrip("/")
        self._rate = fault_rate
        self._rng = random.Random(seed)
        self._kinds = tuple(kinds)
        self._script = list(script)
        self._retry_after_s = retry_after_s
        self._slow_s = slow_s
        self._max_requests = max_requests
        self._lifetime_s = lifetime_s
        self._lock = threading.Lock()
        self._stats = ProxyStats()
        self._events: list[ProxyEvent] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name="fault-proxy", daemon=True)
        self.port = 0

    # -- control (test thread) ----------------------------------------------------------------

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + "/v1"

    def start(self) -> FaultProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive() and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, object]:
        with self._lock:
            return self._stats.as_json()

    def settled_stats(self, timeout_s: float = 10.0) -> dict[str, object]:
        """`stats()` once every upstream call is accounted for (delivered, abandoned or reset).

        The proxy counts an answer as delivered after its last byte is written, and the client may have
        parsed that answer (and a test read the stats) before the proxy's task runs again.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            stats = self.stats()
            resets = stats["faults"].get("reset", 0)  # type: ignore[union-attr]
            if stats["upstream_calls"] == stats["delivered"] + stats["abandoned"] + resets:  # type: ignore[operator]
                return stats
            if time.monotonic() > deadline:
                return stats
            time.sleep(0.02)

    def events(self) -> list[ProxyEvent]:
        with self._lock:
            return list(self._events)

    # -- the server (its own thread and loop) --------------------------------------------------

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stopped = asyncio.Event()
        async with httpx.AsyncClient(timeout=None) as upstream:
            server = await asyncio.start_server(
                lambda r, w: self._connection(r, w, upstream), "127.0.0.1", 0
            )
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            try:
                await asyncio.wait_for(self._stopped.wait(), timeout=self._lifetime_s)
            except asyncio.TimeoutError:
                pass
            server.close()
            # Connections still open (a slow response, keep-alive) are dropped with the loop.
            for task in asyncio.all_tasks() - {asyncio.current_task()}:
                task.cancel()
            await server.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> _Request | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        return _Request(method, path, headers, body, time.monotonic())

    def _choose_fault(self) -> str | None:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            if self._rng.random() < self._rate:
                return self._rng.choice(self._kinds)
            return None

    def _record(self, request: _Request, fault: str | None, retry_after: float | None = None) -> None:
        event = ProxyEvent(
            arrived=request.arrived,
            answered=time.monotonic(),
            path=request.path,
            body_digest=hashlib.sha256(request.body).hexdigest()[:16],
            authorized=request.headers.get("authorization", "").startswith("Bearer "),
            fault=fault,
            retry_after_s=retry_after,
        )
        with self._lock:
            self._events.append(event)
            if fault:
                self._stats.faults[fault] += 1

    async def _connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: httpx.AsyncClient
    ) -> None:
        try:
            while (request := await self._read_request(reader)) is not None:
                if not await self._answer(request, reader, writer, upstream):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(
        self,
        request: _Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: httpx.AsyncClient,
    ) -> bool:
        """Answer one request; False when the connection must not be reused."""
        json_type = {"Content-Type": "application/json"}
        if request.path == STATS_PATH:
            return await self._send(writer, 200, json_type, json.dumps(self.stats()).encode())
        with self._lock:
            self._stats.requests += 1
            over_budget = self._stats.requests > self._max_requests
        if over_budget:
            return await self._send(writer, 503, json_type, b'{"error": "fault proxy request budget spent"}')
        fault = self._choose_fault()
        if fault == "rate_limit":
            headers = {**json_type, "Retry-After": str(self._retry_after_s)}
            alive = await self._send(writer, 429, headers, b'{"error": {"message": "rate limited"}}')
            self._record(request, fault, float(self._retry_after_s))
            return alive
        if fault == "server_error":
            self._record(request, fault)
            return await self._send(writer, 500, json_type, b'{"error": {"message": "injected failure"}}')
        if fault == "garbage":
            self._record(request, fault)
            return await self._send(writer, 200, json_type, b'{"choices": [{"text": "trunc')

        with self._lock:
            self._stats.upstream_calls += 1
        forwarded = await upstream.request(
            request.method,
            self.upstream + request.path,
            content=request.body,
            headers={k: v for k, v in request.headers.items() if k not in ("host", "content-length", "connection")},
        )
        headers = {"Content-Type": forwarded.headers.get("content-type", "application/json")}
        body = forwarded.content
        if fault == "reset":
            self._record(request, fault)
            writer.write(_response_head(forwarded.status_code, headers, len(body)) + body[: len(body) // 2])
            await writer.drain()
            sock = writer.get_extra_info("socket")
            # SO_LINGER 0: close() sends a TCP RST, as a crashed server or a dropped link would.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        self._record(request, fault)
        if fault == "slow" and await _hangs_up_within(reader, self._slow_s):
            # Counted the moment the client gives up, not when the hold ends: a test that reads the
            # stats after its last answer must see every abandoned slow answer.
            with self._lock:
                self._stats.abandoned += 1
            return False
        alive = not reader.at_eof() and await self._send(writer, forwarded.status_code, headers, body)
        with self._lock:
            if alive:
                self._stats.delivered += 1
            else:  # the client timed out and hung up before the answer was ready
                self._stats.abandoned += 1
        return alive

    async def _send(self, writer: asyncio.StreamWriter, status: int, headers: dict[str, str], body: bytes) -> bool:
        try:
            writer.write(_response_head(status, headers, len(body)) + body)
            await writer.drain()
            return True
        except ConnectionError:  # the client gave up (timeout) and closed the connection
            return False


async def _hangs_up_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True if the client closes the connection within `seconds` (it sends nothing while it waits for
    an answer: HTTP/1.1 clients do not pipeline)."""
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except asyncio.TimeoutError:
        return False
