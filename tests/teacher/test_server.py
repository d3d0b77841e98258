"""The llama.cpp teacher server wrapper: starts on the embedded GGUF, stops cleanly, fails clearly."""

from __future__ import annotations

import httpx
import pytest

from cotspec.errors import CotspecError
from cotspec.teacher.server import EMBEDDED_PRESET, resolve_gguf, start_llama_server


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
    with pytest.raises(CotspecError, match="--model .*no such file"):
        resolve_gguf(tmp_path / "missing.gguf")
    path, name = resolve_gguf(EMBEDDED_PRESET)
    assert path.is_file() and name == EMBEDDED_PRESET
