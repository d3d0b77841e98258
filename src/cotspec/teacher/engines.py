"""The two programs that can serve a GGUF teacher: how each is found, launched, and kept from reading
settings out of our environment. `cotspec.teacher.server` runs either one the same way.

- ``llama-server``: llama.cpp's C++ server (``make install-teacher-server`` builds it). It decodes
  ``parallel`` requests together (slots with continuous batching), computes top-k logprobs in C++ (a
  partial sort of the logits), and honours ``n`` up to ``parallel``. On a 2-core CPU it samples with
  top-5 logprobs about 7x faster than the other one (bench/sampling_throughput.py).
- ``llama-cpp-python``: ``python -m llama_cpp.server`` (``make install-teacher``, or a pip install). One
  request at a time, top-k logprobs sorted in Python, ``n`` ignored. It is still the default: it is what
  ``make install-teacher``/``make demo`` and ``pip install 'cotspec[teacher]'`` install, while llama-server
  needs its own cmake build. The pipeline picks one with ``teacher.server_engine``.

Both run the same llama.cpp: the server is built from the copy the llama-cpp-python sdist vendors, with
the same portable flags (no AVX-512, no AMX: see the Makefile).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from ..errors import CotspecError

Engine = Literal["llama-cpp-python", "llama-server"]
ENGINES: tuple[str, ...] = ("llama-cpp-python", "llama-server")

DEFAULT_PARALLEL = 8
"""llama-server's slots when none are asked for: the OpenAI backend's default concurrency, so every request
in flight decodes at once. With the embedded model on 2 cores, throughput still rose from 4 slots to 8
(bench/sampling_throughput.py); each slot costs only its share of the KV cache."""

BINARY_ENV = "COTSPEC_LLAMA_SERVER"
"""Environment variable naming a llama-server binary to use instead of the one `make` installed."""

INSTALL_HINTS = {
    "llama-cpp-python": (
        "run `make install-teacher` in the cotspec checkout, or "
        "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir 'llama-cpp-python[server]>=0.3,<0.4'"
    ),
    "llama-server": (
        "run `make install-teacher-server` in the cotspec checkout (it builds llama.cpp's server for a "
        f"portable instruction set), or set ${BINARY_ENV} to a llama-server binary"
    ),
}


@dataclass(frozen=True)
class Launch:
    """What to run: the command line and the environment it gets."""

    command: list[str]
    env: dict[str, str]


def require(engine: Engine) -> None:
    """One-line CotspecError when `engine` is not installed."""
    if engine == "llama-server":
        llama_server_binary()
    elif importlib.util.find_spec("llama_cpp") is None:
        raise CotspecError(
            f"llama-cpp-python is not installed (the local teacher server needs it): {INSTALL_HINTS[engine]}"
        )


def llama_server_binary() -> Path:
    """$COTSPEC_LLAMA_SERVER, else the one ``make install-teacher-server`` put next to this Python."""
    named = os.environ.get(BINARY_ENV)
    if named:
        path = Path(named).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise CotspecError(f"${BINARY_ENV}={named}: not an executable file; {INSTALL_HINTS['llama-server']}")
        return path
    # Not PATH: a llama-server found there is usually a native build, which takes the AMX path that
    # crashes on Intel Xeons; the venv's copy is the portable build `make` made.
    beside = Path(sys.executable).parent / "llama-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    raise CotspecError(f"llama.cpp's llama-server is not installed: {INSTALL_HINTS['llama-server']}")


def launch(
    engine: Engine,
    model_path: Path,
    model_name: str,
    host: str,
    port: int,
    n_ctx: int,
    n_threads: int | None,
    parallel: int,
    extra_args: Sequence[str] = (),
) -> Launch:
    """The command line serving `model_path` as `model_name` on host:port, with `n_ctx` per request."""
    if engine == "llama-server":
        return _llama_server(model_path, model_name, host, port, n_ctx, n_threads, parallel, extra_args)
    return _llama_cpp_python(model_path, model_name, host, port, n_ctx, n_threads, extra_args)


def _llama_server(
    model_path: Path, model_name: str, host: str, port: int, n_ctx: int, n_threads: int | None,
    parallel: int, extra_args: Sequence[str],
) -> Launch:
    threads = n_threads or max(1, (os.cpu_count() or 2) // 2)  # llama-cpp-python's default, for like with like
    command = [
        str(llama_server_binary()),
        "--model", str(model_path),
        "--alias", model_name,
        "--host", host,
        "--port", str(port),
        # -c is the KV cache of all slots together; each slot (request) gets an equal share.
        "--ctx-size", str(n_ctx * parallel),
        "--no-kv-unified",
        "--parallel", str(parallel),
        "--cont-batching",
        "--threads", str(threads),
        "--threads-batch", str(threads),
        "--no-webui",
        # Level 4 (trace) is the lowest that logs the "system_info: ... | CPU : AVX2 = 1 | ..." line: the
        # compiled-in CPU features, which tell a crash on the AMX path apart (server._crash_hint). It adds
        # a few lines per request, not per token.
        "--log-verbosity", "4",
        *extra_args,
    ]
    # It reads LLAMA_ARG_<FLAG> (any flag), LLAMA_API_KEY and AIP_* (a Vertex AI mode that moves the
    # port) from the environment: the flags above must be what it uses.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLAMA_", "AIP_"))}
    return Launch(command, env)


def _llama_cpp_python(
    model_path: Path, model_name: str, host: str, port: int, n_ctx: int, n_threads: int | None,
    extra_args: Sequence[str],
) -> Launch:
    options = {
        "model": str(model_path),
        "model_alias": model_name,
        "host": host,
        "port": str(port),
        "n_ctx": str(n_ctx),
        "logits_all": "true",  # top-k logprobs need the logits of every position
        **({"n_threads": str(n_threads)} if n_threads else {}),
    }
    command = [
        sys.executable, "-m", "llama_cpp.server",
        # llama_cpp.server's own command-line options, not ours
        *(arg for name, value in options.items() for arg in (f"--{name}", value)),
        *extra_args,
    ]
    return Launch(command, _llama_cpp_python_environment())


def _llama_cpp_python_environment() -> dict[str, str]:
    """This environment minus the variables the server would read as settings (pydantic-settings:
    MODEL, PORT, HOST, API_KEY, ...)."""
    from llama_cpp.server.settings import ConfigFileSettings, Settings

    names = set(Settings.model_fields) | set(ConfigFileSettings.model_fields) | {"config_file"}
    return {k: v for k, v in os.environ.items() if k.lower() not in names}
