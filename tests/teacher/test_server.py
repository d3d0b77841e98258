"""The llama.cpp teacher server wrapper: starts on the embedded GGUF, stops cleanly, fails clearly."""

from __future__ import annotations

import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest

from cotspec.errors import CotspecError
from cotspec.teacher import engines
from cotspec.teacher.server import EMBEDDED_PRESET, LlamaServer, LlamaServerConfig, resolve_gguf, start_llama_server


def test_fixture_server_serves_the_embedded_model(llama_server):
    listed = httpx.get(llama_server.base_url + "/models").json()
    assert [m["id"] for m in listed["data"]] == [EMBEDDED_PRESET]
    assert llama_server.model_path.name == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_server_ignores_its_settings_in_the_environment_and_stops_on_exit(monkeypatch):
    # pydantic-settings would read these; PORT and API_KEY would move the server or lock us out.
    monkeypatch.setenv("PORT", "1")
    monkeypatch.setenv("API_KEY", "would-require-auth")
    monkeypatch.setenv("MODEL", "/nonexistent.gguf")
    with start_llama_server(n_ctx=256, n_threads=1) as server:
        process = server.process
        assert httpx.get(server.base_url + "/models").status_code == 200  # no key needed, our port
    assert process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.base_url + "/models")


def test_startup_failure_is_one_line_with_the_server_log(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a gguf file")
    with pytest.raises(CotspecError, match=r"exited with status \d+ while starting.*Failed to load model") as raised:
        with start_llama_server(bogus, startup_timeout_s=60):
            pass
    assert "\n" not in str(raised.value)


def test_model_must_be_a_file_or_the_preset(tmp_path):
    with pytest.raises(CotspecError, match="^model: .*missing.gguf: no such file"):
        resolve_gguf(tmp_path / "missing.gguf")
    path, name = resolve_gguf(EMBEDDED_PRESET)
    assert path.is_file() and name == EMBEDDED_PRESET


# ---- the crash path of issue 8, on every CPU -----------------------------------------------------------


def test_a_completion_with_top5_logprobs_is_well_formed(llama_server):
    # The request that died in ggml_backend_amx_mul_mat on Intel AMX CPUs with a native build.
    response = httpx.post(
        llama_server.base_url + "/completions",
        json={"model": llama_server.model_name, "prompt": "Q: What is 3 + 4?\nA:", "max_tokens": 6,
              "temperature": 0.0, "logprobs": 5},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    logprobs = response.json()["choices"][0]["logprobs"]
    assert 1 <= len(logprobs["tokens"]) <= 6
    assert len(logprobs["top_logprobs"]) == len(logprobs["tokens"]) == len(logprobs["token_logprobs"])
    for top in logprobs["top_logprobs"]:
        assert len(top) >= 5 and all(lp <= 0.0 for lp in top.values())
    assert llama_server.running


def test_the_build_cannot_take_the_amx_path(llama_server):
    # llama.cpp prints the CPU features it was compiled for; the crashing native build reads AMX_INT8 = 1.
    # The portable build (make install-teacher) compiles neither AMX nor AVX-512 kernels, on any machine.
    features = next(
        line for line in llama_server.log_path.read_text(errors="replace").splitlines() if "AVX2 = " in line
    )
    assert "AVX2 = 1" in features and "FMA = 1" in features
    assert "AMX_INT8 = 1" not in features and "AVX512 = 1" not in features


def test_a_server_killed_by_a_signal_is_one_line_with_the_signal_and_its_log_kept():
    with pytest.raises(CotspecError) as raised:
        with start_llama_server(n_ctx=256, n_threads=1) as server:
            server.process.send_signal(signal.SIGSEGV)  # what the AMX crash looked like from outside
            server.process.wait(timeout=30)
            server.check()
    message = str(raised.value)
    assert "was killed by SIGSEGV while serving" in message and str(server.log_path) in message
    assert "\n" not in message
    assert server.log_path.is_file()  # kept: it is the evidence
    server.log_path.unlink()


def test_a_server_that_dies_before_it_answers_is_reported_while_starting(monkeypatch):
    import cotspec.teacher.server as server_module

    # Die after the model is listed, before the probe completion: the window a kernel crash falls in.
    real_get = httpx.Client.get

    def get_then_crash(self, url, *args, **kwargs):
        response = real_get(self, url, *args, **kwargs)
        if url.endswith("/models") and response.status_code == 200:
            started[0].send_signal(signal.SIGSEGV)
            started[0].wait(timeout=30)
        return response

    started = []
    real_popen = server_module.subprocess.Popen
    monkeypatch.setattr(server_module.subprocess, "Popen", lambda *a, **k: started.append(real_popen(*a, **k)) or started[0])
    monkeypatch.setattr(httpx.Client, "get", get_then_crash)
    with pytest.raises(CotspecError, match=r"was killed by SIGSEGV while starting \(log .*\.log\)"):
        with start_llama_server(n_ctx=256, n_threads=1, startup_timeout_s=60):
            pass


def test_an_amx_build_crash_says_how_to_reinstall(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("system_info: n_threads = 1 | CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |\n")
    process = subprocess.Popen(["sh", "-c", "kill -SEGV $$"])
    process.wait()
    server = LlamaServer("http://127.0.0.1:1/v1", EMBEDDED_PRESET, Path("m.gguf"), process, log)
    with pytest.raises(CotspecError, match=r"killed by SIGSEGV.*built with AMX kernels.*make install-teacher"):
        server.check()


def test_a_port_another_program_listens_on_is_refused_before_starting():
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(CotspecError, match=rf"cannot listen on 127\.0\.0\.1:{port}.*another program"):
            with start_llama_server(port=port):
                pass


# ---- the engine setting (the llama-server engine itself: test_llama_server.py) ----------------------------


def test_settings_are_checked_before_anything_starts():
    with pytest.raises(CotspecError, match="^engine: must be one of llama-cpp-python, llama-server"):
        LlamaServerConfig(engine="vllm")  # type: ignore[arg-type]
    with pytest.raises(CotspecError, match="^parallel: llama-cpp-python's server serves one request at a time"):
        LlamaServerConfig(parallel=4)
    assert LlamaServerConfig(engine="llama-server").slots == engines.DEFAULT_PARALLEL


def test_a_missing_binary_named_in_the_environment_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv(engines.BINARY_ENV, str(tmp_path / "nope"))
    with pytest.raises(CotspecError, match=r"COTSPEC_LLAMA_SERVER=.*nope: not an executable file.*make install-teacher-server"):
        with start_llama_server(engine="llama-server"):
            pass
