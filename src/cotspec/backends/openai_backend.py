"""Sample from (or evaluate) any model behind an OpenAI-compatible HTTP API.

Works unchanged against vLLM, llama.cpp's server (``cotspec serve-teacher``), ``transformers serve``
and hosted APIs, over the completions API (default) or chat completions (``api="chat"``).

Two ways in (the `Backend` protocol)
------------------------------------
``generate_requests(requests, params)`` is the native one, which the teacher sampler uses to resume: each
`SampleRequest` names a caller-chosen ``key`` (a question id), its prompt, and the ``sample_ids`` still
missing (e.g. ``(17, 18, ..., 39)`` when 17 of 40 samples are already stored). It yields one
`SampleResult(key, sample_id, completion)` per sample *as soon as the HTTP response carrying it
arrives*, so the caller can persist each sample before the next one lands: a run killed at any point
loses only the requests in flight, and a restart asks for exactly the samples that are still missing.

``generate(prompts, params)`` is built on it (`GenerateFromRequests`): it yields ``(prompt index,
params.n completions)`` once all n samples of a prompt are in.

How requests are sent
---------------------
- The samples of a request are asked for ``max_n_per_request`` at a time with the API's ``n``. Some
  servers ignore ``n`` (llama-cpp-python's server always returns one choice): when a response has fewer
  choices than asked, the ones received are kept and the rest are sent as one request per sample,
  for the rest of the run. Others cap it (llama.cpp's llama-server at its slot count) and refuse more
  with HTTP 400: then half as many are asked for per request, for the rest of the run, down to one;
  a 400 that has nothing to do with ``n`` still stops the run, at one sample per request.
- Seeds: with ``params.seed`` set, each HTTP request carries ``sample_seed(seed, prompt, first sample
  id)``, so a sample is reproducible however the run was split or resumed. Without one, sampled
  (temperature > 0) requests carry a fresh random seed: servers such as llama.cpp's otherwise derive
  per-request seeds from a fixed default, and two servers of a fleet would return identical samples.
  A retry resends the same body, seed included.
- At most ``concurrency`` requests are in flight, spread over the fleet of ``base_urls``
  (least-in-flight; dead endpoints cooled down, see `fleet`). Transient failures are retried with
  backoff honouring Retry-After (see `retry`); after ``max_attempts`` the run stops taking new work,
  lets the requests in flight finish (their samples are still yielded), then raises a one-line
  `CotspecError` naming the API path, endpoint and last failure. A refused connection on every
  server of the fleet is not retried: nothing listens there (never started, wrong URL, or it died), so
  the run stops at once, at its first request or in the middle, instead of backing off for minutes.
- The API key is read from the environment variable named by ``api_key_env`` when a run starts and
  lives only in that run's HTTP client headers: it is never stored on the backend, logged, or put in
  an error message.

The HTTP engine is asyncio (httpx.AsyncClient) on a background thread; the generators above are plain
synchronous iterators fed from it through a queue, and closing them early cancels what is in flight.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import random
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Sequence
from urllib.parse import urlsplit

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from ..errors import ConfigError, CotspecError
from .base import (
    SEED_MODULUS,
    BackendSettings,
    GenerateFromRequests,
    ProgressCallback,
    SampleRequest,
    SampleResult,
    SamplingParams,
    sample_seed,
)
from .fleet import Endpoint, EndpointPool
from .openai_wire import API_PATHS, MalformedResponse, build_payload, first_model_id, parse_choices
from .retry import TransientHTTPError, WaitForServer, is_retryable_status, parse_retry_after

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OpenAIConfig:
    """How to reach an OpenAI-compatible server (or a fleet of them) and how hard to try."""

    base_urls: tuple[str, ...]
    """API root(s) such as ``http://127.0.0.1:8000/v1`` (``/v1`` is added when the URL has no path).
    Several, comma-separated, spread requests over a fleet of servers of the same model."""
    model: str | None = None
    """Model name sent with every request; None asks the first server (``GET /models``)."""
    api: Literal["completions", "chat"] = "completions"
    """``completions`` (raw prompt, as the paper's teachers) or ``chat`` (prompt as one user message)."""
    api_key_env: str | None = None
    """Environment variable holding the API key. Unset: $OPENAI_API_KEY if it is set, else no key; a
    variable named here must be set (a key meant to be sent is never silently left out)."""
    concurrency: int = 8
    """Most HTTP requests in flight at once, over the whole fleet."""
    timeout_s: float = 600.0
    """Seconds to wait for a response (connect, send, and each read) before retrying."""
    max_attempts: int = 8
    """Tries per HTTP request, the first included, before the run fails."""
    backoff_initial_s: float = 1.0
    """First retry wait in seconds; it doubles per attempt, plus up to this much random jitter."""
    backoff_max_s: float = 60.0
    """Longest backoff wait in seconds."""
    max_retry_after_s: float = 300.0
    """Longest server-requested wait (Retry-After) honoured, in seconds."""
    max_n_per_request: int = 16
    """Most samples asked for in one request (the API's ``n``); a failed request loses at most these."""
    cooldown_s: float = 30.0
    """Seconds a failing endpoint of the fleet is left alone before one probe request."""
    failures_before_cooldown: int = 3
    """Consecutive failures that put an endpoint in cool-down (a refused connection does at once)."""

    def __post_init__(self) -> None:
        # Accept what a CLI hands over: one string or several, each possibly comma-separated.
        given = (self.base_urls,) if isinstance(self.base_urls, str) else tuple(self.base_urls)
        urls = [u for item in given for u in item.split(",") if u.strip()]
        normalized = tuple(_normalize_base_url(u) for u in urls)
        if not normalized:
            raise ConfigError("base_urls", "is required: the server's API root, e.g. http://127.0.0.1:8000/v1")
        object.__setattr__(self, "base_urls", normalized)
        if self.api not in API_PATHS:
            raise ConfigError("api", f"must be one of {sorted(API_PATHS)}, got {self.api!r}")
        if self.api_key_env is not None:
            if not self.api_key_env.replace("_", "").isalnum():
                raise ConfigError("api_key_env", f"must be an environment variable name, got {self.api_key_env!r}")
            if not os.environ.get(self.api_key_env):
                raise ConfigError(
                    "api_key_env",
                    f"{self.api_key_env}: that environment variable is not set or empty; "
                    "export it, or leave this setting out to send no key",
                )
        checks = [
            ("concurrency", self.concurrency >= 1, self.concurrency, ">= 1"),
            ("timeout_s", self.timeout_s > 0, self.timeout_s, "> 0 seconds"),
            ("max_attempts", self.max_attempts >= 1, self.max_attempts, ">= 1"),
            ("backoff_initial_s", self.backoff_initial_s >= 0, self.backoff_initial_s, ">= 0 seconds"),
            ("backoff_max_s", self.backoff_max_s >= self.backoff_initial_s, self.backoff_max_s,
             f">= `backoff_initial_s` ({self.backoff_initial_s:g})"),
            ("max_retry_after_s", self.max_retry_after_s >= 0, self.max_retry_after_s, ">= 0 seconds"),
            ("max_n_per_request", self.max_n_per_request >= 1, self.max_n_per_request, ">= 1"),
            ("cooldown_s", self.cooldown_s >= 0, self.cooldown_s, ">= 0 seconds"),
            ("failures_before_cooldown", self.failures_before_cooldown >= 1,
             self.failures_before_cooldown, ">= 1"),
        ]
        for field_name, ok, value, want in checks:
            if not ok:
                raise ConfigError(field_name, f"must be {want}, got {value}")


def _normalize_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("base_urls", f"must be http(s) URLs such as http://127.0.0.1:8000/v1, got {url!r}")
    return url if parts.path else url + "/v1"


class RequestRejected(CotspecError):
    """A request the server refused with a 4xx that retrying cannot fix (bad key, URL, model, settings)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Work:
    """One HTTP request's worth of samples: `sample_ids` of `request`, with the seed it carries."""

    request: SampleRequest
    sample_ids: tuple[int, ...]
    seed: int | None


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


class OpenAIBackend(GenerateFromRequests):
    """`Backend` over OpenAI-compatible HTTP servers; see the module docstring."""

    def __init__(self, config: OpenAIConfig):
        self.config = config
        self.name = f"openai:{config.model or 'auto'}"
        self._model = config.model
        self._pool = EndpointPool(config.base_urls, config.cooldown_s, config.failures_before_cooldown)
        self._n_supported = True  # until a server returns fewer choices than asked
        self._max_n = config.max_n_per_request  # halved while a server refuses requests for n > 1
        self._random = random.SystemRandom()

    @classmethod
    def from_options(cls, base_url: str | Sequence[str], model: str | None = None, **options: Any) -> OpenAIBackend:
        """Build from CLI-style values: ``base_url`` may be comma-separated; options are `OpenAIConfig` fields."""
        urls = (base_url,) if isinstance(base_url, str) else tuple(base_url)
        return cls(OpenAIConfig(base_urls=urls, model=model, **options))

    @classmethod
    def from_settings(cls, settings: BackendSettings) -> OpenAIBackend:
        """The registry's constructor: the server fleet, model, key variable and concurrency of `settings`."""
        return cls.from_options(
            settings.base_urls, model=settings.model, api_key_env=settings.api_key_env, concurrency=settings.concurrency
        )

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_urls={list(self.config.base_urls)}, model={self._model!r}, api={self.config.api!r})"

    @property
    def endpoints(self) -> list[Endpoint]:
        """The fleet and what is known of each server's health (for diagnostics)."""
        return list(self._pool.endpoints)

    @property
    def _api_key_env(self) -> str:
        return self.config.api_key_env or "OPENAI_API_KEY"

    @property
    def server_supports_n(self) -> bool:
        """False once a server answered a request for n > 1 samples with fewer."""
        return self._n_supported

    # -- public, synchronous (`generate` comes from GenerateFromRequests) ------------------------

    def generate_requests(
        self,
        requests: Iterable[SampleRequest],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[SampleResult]:
        """Yield one `SampleResult` per requested (key, sample id), in arrival order, each exactly once."""
        requests = list(requests)
        if not requests:
            return
        run = _BackgroundRun(lambda emit: self._run(requests, params, emit))
        try:
            while True:
                item = run.results.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                if on_tokens is not None:
                    on_tokens(item.completion.completion_tokens)
                yield item
        finally:
            run.stop()

    def close(self) -> None:
        """Nothing to release: each run owns its HTTP client and closes it when the run ends."""

    # -- the async engine ---------------------------------------------------------------------

    def _plan(self, request: SampleRequest, params: SamplingParams) -> list[_Work]:
        size = self._max_n if self._n_supported else 1
        return self._split(request, request.sample_ids, size, params)

    def _split(
        self, request: SampleRequest, ids: tuple[int, ...], size: int, params: SamplingParams
    ) -> list[_Work]:
        return [self._work(request, ids[i : i + size], params) for i in range(0, len(ids), size)]

    def _work(self, request: SampleRequest, sample_ids: tuple[int, ...], params: SamplingParams) -> _Work:
        if params.seed is not None:
            seed: int | None = sample_seed(params.seed, request.prompt, sample_ids[0])
        elif not params.greedy:
            seed = self._random.randrange(SEED_MODULUS)
        else:
            seed = None
        return _Work(request, sample_ids, seed)

    async def _run(
        self, requests: list[SampleRequest], params: SamplingParams, emit: Callable[[Any], None]
    ) -> None:
        api_key = os.environ.get(self._api_key_env) or None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        timeout = httpx.Timeout(self.config.timeout_s)
        limits = httpx.Limits(max_connections=self.config.concurrency + len(self.config.base_urls))
        async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as client:
            if self._model is None:
                body = await self._call(client, "GET", "/models", None, api_key)
                try:
                    self._model = first_model_id(body)
                except MalformedResponse:
                    raise ConfigError(
                        "model", "is not set and the server lists no model at GET /models; name the model it serves"
                    ) from None
                self.name = f"openai:{self._model}"
            pending: asyncio.Queue[_Work] = asyncio.Queue()
            for request in requests:
                for work in self._plan(request, params):
                    pending.put_nowait(work)
            failures: list[Exception] = []  # the first one ends the run once in-flight work is done

            async def worker() -> None:
                while True:
                    work = await pending.get()
                    try:
                        if not failures:  # after a failure, drain without sending
                            for item in await self._sample(client, work, params, api_key, pending):
                                emit(item)
                    except Exception as err:  # a bug too: a dead worker would hang join()
                        failures.append(err)
                    finally:
                        pending.task_done()

            workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
            try:
                await pending.join()
            finally:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
            if failures:
                raise failures[0]

    async def _sample(
        self,
        client: httpx.AsyncClient,
        work: _Work,
        params: SamplingParams,
        api_key: str | None,
        pending: asyncio.Queue[_Work],
    ) -> list[SampleResult]:
        api = self.config.api
        assert self._model is not None
        payload = build_payload(api, self._model, work.request.prompt, params, len(work.sample_ids), work.seed)
        try:
            completions = await self._call(client, "POST", API_PATHS[api], payload, api_key, params)
        except RequestRejected as err:
            if err.status != 400 or len(work.sample_ids) == 1:
                raise
            # min(): requests refused at the same time all land on the same smaller size.
            self._max_n = min(self._max_n, len(work.sample_ids) // 2)
            logger.info("server refused n=%d (%s); asking for %d per request",
                        len(work.sample_ids), err, self._max_n)
            for part in self._split(work.request, work.sample_ids, self._max_n, params):
                pending.put_nowait(part)
            return []
        got = completions[: len(work.sample_ids)]
        if len(got) < len(work.sample_ids):
            # The server ignored `n`: keep what came and ask for the rest one sample per request.
            if self._n_supported:
                logger.info("server returned %d of %d choices: it ignores n; sending one request per sample",
                            len(got), len(work.sample_ids))
                self._n_supported = False
            for sample_id in work.sample_ids[len(got):]:
                pending.put_nowait(self._work(work.request, (sample_id,), params))
        return [SampleResult(work.request.key, sid, c) for sid, c in zip(work.sample_ids, got)]

    async def _call(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        api_key: str | None,
        params: SamplingParams | None = None,
    ) -> Any:
        """One API call with retries: the parsed completions (POST) or JSON body (GET)."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=WaitForServer(
                self.config.backoff_initial_s,
                self.config.backoff_max_s,
                self.config.max_retry_after_s,
                self._pool.has_live_alternative,
            ),
            retry=retry_if_exception(self._worth_retrying),
            before_sleep=lambda state: self._log_retry(method, path, state),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._call_once(client, method, path, payload, api_key, params)
        except TransientHTTPError as err:
            if self._pool.all_refused():
                servers = ", ".join(e.base_url for e in self._pool.endpoints)
                raise CotspecError(
                    f"no server accepts connections at {servers} (connection refused): it is not running, "
                    "it stopped, or the URL is wrong; start it and run again"
                ) from None
            raise CotspecError(
                f"{method} {path} failed after {self.config.max_attempts} attempts; last: {err}. "
                "Check that the server is up and not overloaded, then run again"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _worth_retrying(self, error: BaseException) -> bool:
        return isinstance(error, TransientHTTPError) and not (error.endpoint_down and self._pool.all_refused())

    async def _call_once(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        api_key: str | None,
        params: SamplingParams | None,
    ) -> Any:
        endpoint = self._pool.acquire()
        healthy = False
        down = refused = False
        try:
            try:
                response = await client.request(method, endpoint.base_url + path, json=payload)
            except (httpx.ConnectError, httpx.ConnectTimeout) as err:
                down = True
                refused = isinstance(err, httpx.ConnectError)
                raise TransientHTTPError(f"cannot connect ({type(err).__name__})", endpoint, endpoint_down=True) from None
            except httpx.TimeoutException:
                raise TransientHTTPError(f"no response within {self.config.timeout_s:g} s", endpoint) from None
            except httpx.TransportError as err:  # reset, closed mid-response, protocol garbage
                raise TransientHTTPError(f"connection broken ({type(err).__name__})", endpoint) from None
            status = response.status_code
            if is_retryable_status(status):
                healthy = status < 500  # 429 & co: alive, just busy
                raise TransientHTTPError(
                    f"HTTP {status}", endpoint, status=status,
                    retry_after=parse_retry_after(response.headers.get("retry-after")),
                )
            healthy = True
            if status >= 400:
                raise self._client_error(method, path, endpoint, response, api_key)
            try:
                body = response.json()
                return parse_choices(self.config.api, body, params) if params is not None else body
            except ValueError as err:  # invalid JSON or MalformedResponse
                healthy = False
                raise TransientHTTPError(f"invalid response body ({type(err).__name__})", endpoint) from None
        finally:
            self._pool.release(endpoint, ok=healthy, down=down, refused=refused)

    def _client_error(
        self, method: str, path: str, endpoint: Endpoint, response: httpx.Response, api_key: str | None
    ) -> RequestRejected:
        hint = {
            401: f"check the API key in ${self._api_key_env}",
            403: f"check the API key in ${self._api_key_env}",
            404: "check the server's base URL (it usually ends in /v1) and the model name",
        }.get(response.status_code, "check the sampling settings and the model name")
        detail = _redact(response.text[:200], api_key)
        return RequestRejected(
            f"{method} {path} on {endpoint.label} was rejected with HTTP {response.status_code}: {detail}; {hint}",
            response.status_code,
        )

    def _log_retry(self, method: str, path: str, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        logger.info("%s %s: %s; retry %d/%d in %.1f s", method, path, error, state.attempt_number,
                    self.config.max_attempts - 1, wait)


_DONE = object()


class _BackgroundRun:
    """Runs one coroutine on a private event loop thread; what it emits lands in `results`.

    The queue receives each emitted item, then either `_DONE` or the exception that ended the run.
    """

    def __init__(self, make_coroutine: Callable[[Callable[[Any], None]], Any]):
        self.results: queue.Queue[Any] = queue.Queue()
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(make_coroutine(self.results.put))
        self._thread = threading.Thread(target=self._main, name="cotspec-openai", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self._loop.run_until_complete(self._task)
            self.results.put(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consuming thread
            self.results.put(err)
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def stop(self) -> None:
        """Cancel whatever is still in flight and wait for the thread to finish."""
        if self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._task.cancel)
            except RuntimeError:  # the loop closed in between
                pass
            self._thread.join()
