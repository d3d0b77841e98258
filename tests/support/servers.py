"""Fixtures for real model servers: one llama.cpp server per test session, fault proxies per test."""

from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

import pytest

from cotspec.errors import CotspecError
from cotspec.teacher.server import LlamaServer, start_llama_server

from .fault_proxy import FaultProxy


@pytest.fixture(scope="session")
def llama_server_process() -> Iterator[LlamaServer]:
    """One llama.cpp server for the whole session; tests use `llama_server`, which checks it is alive.

    A server that cannot start fails here once: pytest keeps a session fixture's error and hands it to
    every later test that needs it at once, instead of each test waiting for its own connection timeouts.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        # Required, not optional: the teacher path is only tested against a real server.
        pytest.fail(
            "llama-cpp-python is not installed, so the real teacher server cannot start; "
            "run `make test` (it installs the `teacher` extra) or pip install -e '.[teacher]'",
            pytrace=False,
        )
    try:
        with start_llama_server(n_ctx=512) as server:
            yield server
    except CotspecError as err:
        pytest.fail(f"the test teacher server failed: {err}", pytrace=False)


@pytest.fixture
def llama_server(llama_server_process: LlamaServer) -> LlamaServer:
    """llama.cpp's OpenAI-compatible server on the embedded SmolLM2-135M-Instruct GGUF (loopback).

    Fails at once, with the server's exit status or signal and its log, when it died in an earlier test.
    """
    try:
        llama_server_process.check("during an earlier test")
    except CotspecError as err:
        pytest.fail(str(err), pytrace=False)
    return llama_server_process


@pytest.fixture
def fault_proxy() -> Iterator[Callable[..., FaultProxy]]:
    """Factory: `fault_proxy(upstream_origin, **options)` starts a FaultProxy, stopped after the test."""
    started: list[FaultProxy] = []

    def start(upstream: str, **options: object) -> FaultProxy:
        proxy = FaultProxy(upstream, **options).start()  # type: ignore[arg-type]
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
