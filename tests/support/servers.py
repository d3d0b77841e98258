"""Fixtures for real model servers: one llama.cpp server per test session, fault proxies per test."""

from __future__ import annotations

import importlib.util
from typing import Callable, Iterator

import pytest

from cotspec.teacher.server import LlamaServer, start_llama_server

from .fault_proxy import FaultProxy


@pytest.fixture(scope="session")
def llama_server() -> Iterator[LlamaServer]:
    """llama.cpp's OpenAI-compatible server on the embedded SmolLM2-135M-Instruct GGUF (loopback)."""
    if importlib.util.find_spec("llama_cpp") is None:
        # Required, not optional: the teacher path is only tested against a real server.
        pytest.fail(
            "llama-cpp-python is not installed, so the real teacher server cannot start; "
            "run `make test` (it installs the `teacher` extra) or pip install -e '.[teacher]'",
            pytrace=False,
        )
    with start_llama_server(n_ctx=512) as server:
        yield server


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
