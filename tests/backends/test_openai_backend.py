"""OpenAIBackend against a real llama.cpp server, directly and through a fault-injecting proxy."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest
from support.fault_proxy import FAULT_KINDS

from cotspec.backends import SampleRequest, SamplingParams
from cotspec.backends.openai_backend import OpenAIBackend, OpenAIConfig
from cotspec.errors import CotspecError
from cotspec.teacher.server import free_port

PROMPTS = [
    "Q: Tom has 3 apples and buys 2 more. How many apples does he have?\nLet's think step by step\n",
    "Q: A box holds 4 pens. How many pens are in 3 boxes?\nLet's think step by step\n",
    "Q: Sara had 10 dollars and spent 4. How much is left?\nLet's think step by step\n",
]
# Short generations keep the suite fast; every path (n fallback, logprobs, retries) is still exercised.
SHORT = SamplingParams(max_new_tokens=6, temperature=0.5, n=3, top_logprobs=3, seed=11)
SECRET = "sk-cotspec-test-0123456789abcdef"


def origin(server) -> str:
    return server.base_url.removesuffix("/v1")


def backend_for(url, server, **options) -> OpenAIBackend:
    options.setdefault("backoff_initial_s", 0.05)
    return OpenAIBackend.from_options(url, model=server.model_name, **options)


def assert_well_formed(completion, k: int) -> None:
    assert completion.finish_reason in ("stop", "length")
    assert completion.prompt_tokens > 0
    assert completion.tokens is not None and completion.top_logprobs is not None
    assert completion.completion_tokens == len(completion.tokens) == len(completion.top_logprobs)
    assert "".join(completion.tokens) == completion.text
    for candidates in completion.top_logprobs:
        assert 1 <= len(candidates) <= k
        logprobs = [lp for _, lp in candidates]
        assert logprobs == sorted(logprobs, reverse=True) and all(lp <= 0 for lp in logprobs)


def test_config_checks_name_the_field_and_normalize_urls():
    config = OpenAIConfig(base_urls="http://a:8000, http://b:8000/v1/", model="m")  # type: ignore[arg-type]
    assert config.base_urls == ("http://a:8000/v1", "http://b:8000/v1")
    with pytest.raises(CotspecError, match="^concurrency: must be >= 1, got 0$"):
        OpenAIConfig(base_urls=("http://a",), concurrency=0)
    with pytest.raises(CotspecError, match="^base_urls: must be http\\(s\\) URLs"):
        OpenAIConfig(base_urls=("ftp://a",))
    with pytest.raises(CotspecError, match="^api: must be one of"):
        OpenAIConfig(base_urls=("http://a",), api="edit")  # type: ignore[arg-type]


def test_generate_returns_n_samples_per_prompt_with_top_logprobs(llama_server):
    backend = backend_for(llama_server.base_url, llama_server, concurrency=2)
    counted: list[int] = []
    results = dict(backend.generate(PROMPTS[:2], SHORT, on_tokens=counted.append))

    assert sorted(results) == [0, 1]
    for completions in results.values():
        assert len(completions) == SHORT.n
        for completion in completions:
            assert_well_formed(completion, SHORT.top_logprobs)
    # llama.cpp's server answers n=3 with one choice: the other samples came from per-sample requests,
    # each with its own seed, so the samples of a prompt differ.
    assert not backend.server_supports_n
    assert any(len({c.text for c in completions}) > 1 for completions in results.values())
    assert sum(counted) == sum(c.completion_tokens for cs in results.values() for c in cs)


def test_asking_only_for_missing_samples_reproduces_them(llama_server):
    """A resumed run asks for samples 1 and 2 only and gets what an uninterrupted run got."""
    full = dict(backend_for(llama_server.base_url, llama_server).generate(PROMPTS[:1], SHORT))[0]
    resumed = list(
        backend_for(llama_server.base_url, llama_server).generate_requests(
            [SampleRequest("q0", PROMPTS[0], (1, 2))], SHORT
        )
    )
    assert sorted(r.sample_id for r in resumed) == [1, 2]
    assert {r.sample_id: r.completion.text for r in resumed} == {1: full[1].text, 2: full[2].text}


def test_chat_api_and_no_logprobs_when_not_asked(llama_server):
    chat = backend_for(llama_server.base_url, llama_server, api="chat")
    (index, [completion]), = chat.generate(["What is 2 + 3?"], SamplingParams(max_new_tokens=5, top_logprobs=2))
    assert index == 0 and completion.text
    assert_well_formed(completion, 2)

    plain = backend_for(llama_server.base_url, llama_server)
    (_, [completion]), = plain.generate(PROMPTS[:1], SamplingParams(max_new_tokens=5))
    assert completion.text and completion.tokens is None and completion.top_logprobs is None
    assert completion.completion_tokens >= 1


def test_model_name_is_discovered_when_not_given(llama_server):
    backend = OpenAIBackend.from_options(llama_server.base_url)
    list(backend.generate(PROMPTS[:1], SamplingParams(max_new_tokens=2)))
    assert backend.name == f"openai:{llama_server.model_name}"


def test_sampling_through_faults_returns_every_sample_exactly_once(llama_server, fault_proxy):
    timeout_s = 6.0
    # Every fault kind once (scripted, so the test covers all), then a seeded 20% of requests. A slow
    # answer is held well past the client's timeout (the proxy lets go as soon as the client hangs up).
    proxy = fault_proxy(
        origin(llama_server), fault_rate=0.2, seed=0, script=FAULT_KINDS, retry_after_s=1, slow_s=timeout_s + 5
    )
    backend = backend_for(proxy.base_url, llama_server, concurrency=2, timeout_s=timeout_s, max_attempts=10)
    requests = [SampleRequest(f"q{i}", prompt, (0, 1, 2)) for i, prompt in enumerate(PROMPTS)]

    results = list(backend.generate_requests(requests, SHORT))

    assert sorted((r.key, r.sample_id) for r in results) == sorted(
        (f"q{i}", s) for i in range(len(PROMPTS)) for s in (0, 1, 2)
    )
    for result in results:
        assert_well_formed(result.completion, SHORT.top_logprobs)
    stats = proxy.settled_stats()
    assert set(stats["faults"]) == set(FAULT_KINDS)
    # Every answer the server delivered became exactly one sample: none dropped, none asked for twice.
    # The only other teacher compute spent is answers lost on the way back (reset, or the client had
    # timed out: always on a slow fault, sometimes in the server's queue on a busy machine).
    assert stats["delivered"] == len(results)
    assert stats["abandoned"] >= stats["faults"]["slow"]
    assert stats["upstream_calls"] == stats["delivered"] + stats["abandoned"] + stats["faults"]["reset"]

    # Retry-After honoured: the repeat of a rate-limited request arrived no sooner than asked.
    events = proxy.events()
    rate_limited = [(i, e) for i, e in enumerate(events) if e.fault == "rate_limit"]
    assert rate_limited
    for i, event in rate_limited:
        retry = next(e for e in events[i + 1 :] if e.body_digest == event.body_digest)
        assert retry.arrived - event.answered >= event.retry_after_s


def test_retry_exhaustion_is_one_line_and_never_shows_the_key(llama_server, fault_proxy, monkeypatch, caplog):
    monkeypatch.setenv("COTSPEC_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    proxy = fault_proxy(origin(llama_server), fault_rate=1.0, kinds=("server_error",))
    backend = backend_for(proxy.base_url, llama_server, api_key_env="COTSPEC_TEST_KEY", max_attempts=3)

    with pytest.raises(CotspecError) as raised:
        list(backend.generate(PROMPTS[:1], SHORT))

    message = str(raised.value)
    assert "\n" not in message
    assert "POST /completions" in message and "HTTP 500" in message and "3 attempts" in message
    events = proxy.events()
    assert len(events) == 3 and all(e.authorized for e in events)  # the key was sent, every time
    assert httpx.get(proxy.origin + "/__proxy_stats").json()["faults"] == {"server_error": 3}
    for text in (message, caplog.text, repr(backend), repr(backend.config)):
        assert SECRET not in text


def test_client_errors_fail_at_once_with_a_hint(llama_server, fault_proxy):
    proxy = fault_proxy(origin(llama_server), fault_rate=0.0)
    backend = backend_for(proxy.origin + "/not-an-api", llama_server)
    with pytest.raises(CotspecError, match=r"HTTP 404.*check the server's base URL"):
        list(backend.generate(PROMPTS[:1], SHORT))
    assert proxy.stats()["requests"] == 1


def test_fleet_with_a_dead_server_still_completes(llama_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backend = backend_for([dead, llama_server.base_url], llama_server, concurrency=2)
    params = SamplingParams(max_new_tokens=4, temperature=0.5, n=2)

    results = dict(backend.generate(PROMPTS, params))

    assert sorted(results) == [0, 1, 2] and all(len(c) == 2 for c in results.values())
    dead_endpoint, live_endpoint = backend.endpoints
    assert dead_endpoint.consecutive_failures >= 1 and dead_endpoint.down_until > 0  # tried, cooled down
    assert live_endpoint.consecutive_failures == 0


def test_a_fleet_that_refuses_every_connection_fails_at_once_without_backing_off():
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    # Backoff this long would take minutes if a refused connection were retried.
    backend = OpenAIBackend.from_options(dead, model="m", max_attempts=8, backoff_initial_s=30.0)
    started = time.monotonic()
    with pytest.raises(CotspecError, match=r"no server accepts connections at .*connection refused.*not running"):
        list(backend.generate(["Q"], SamplingParams(max_new_tokens=2)))
    assert time.monotonic() - started < 10.0
    assert all(e.refused for e in backend.endpoints)


def test_an_api_key_variable_named_but_unset_is_an_error_not_a_missing_key(monkeypatch):
    monkeypatch.delenv("COTSPEC_TEST_KEY", raising=False)
    with pytest.raises(CotspecError, match=r"^api_key_env: COTSPEC_TEST_KEY: .*not set"):
        OpenAIBackend.from_options("http://127.0.0.1:9/v1", model="m", api_key_env="COTSPEC_TEST_KEY")
    monkeypatch.setenv("COTSPEC_TEST_KEY", "sk-test")
    OpenAIBackend.from_options("http://127.0.0.1:9/v1", model="m", api_key_env="COTSPEC_TEST_KEY")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    OpenAIBackend.from_options("http://127.0.0.1:9/v1", model="m")  # the default variable may be unset


def test_closing_the_stream_early_stops_the_engine(llama_server):
    backend = backend_for(llama_server.base_url, llama_server, concurrency=2)
    stream = backend.generate_requests([SampleRequest(i, p, (0, 1)) for i, p in enumerate(PROMPTS)], SHORT)
    first = next(stream)
    stream.close()
    assert first.completion.text is not None
    assert not [t for t in threading.enumerate() if t.name == "cotspec-openai"]
