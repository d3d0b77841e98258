"""llama.cpp's C++ llama-server as the teacher (engine llama-server), always the real binary on the embedded
GGUF: top-k logprobs as the backend reads them, parallel slots, `n`, and failures in one line.

Skipped, with the reason, only when the binary is not built (`make install-teacher-server`).
"""

from __future__ import annotations

import math
import signal
from typing import Iterator

import httpx
import pytest

from cotspec.backends import SampleRequest, SamplingParams
from cotspec.backends.openai_backend import OpenAIBackend
from cotspec.errors import CotspecError
from cotspec.teacher import engines
from cotspec.teacher.server import EMBEDDED_PRESET, LlamaServer, start_llama_server

try:
    engines.require("llama-server")
except CotspecError as missing:
    pytest.skip(f"llama-server is not built: {missing}", allow_module_level=True)

SLOTS = 4
PROMPTS = [
    "Q: Tom has 3 apples and buys 2 more. How many apples does he have?\nLet's think step by step\n",
    "Q: A box holds 4 pens. How many pens are in 3 boxes?\nLet's think step by step\n",
    "Q: Sara had 10 dollars and spent 4. How much is left?\nLet's think step by step\n",
    "Q: A train travels 60 km in 1 hour. How far does it go in 3 hours?\nLet's think step by step\n",
]


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    with start_llama_server(n_ctx=512, engine="llama-server", parallel=SLOTS) as running:
        yield running


def backend(server: LlamaServer, **options) -> OpenAIBackend:
    return OpenAIBackend.from_options(server.base_url, model=server.model_name, **options)


def test_it_serves_the_embedded_model_with_the_slots_asked_for(server):
    assert server.engine == "llama-server" and server.parallel == SLOTS
    listed = httpx.get(server.base_url + "/models").json()
    assert EMBEDDED_PRESET in [m["id"] for m in listed["data"]]
    log = server.log_path.read_text(errors="replace")
    assert f"n_slots = {SLOTS}" in log  # its own account of the slots it made


def test_the_build_cannot_take_the_amx_path(server):
    # The same portable instruction set as the llama-cpp-python wheel: no AMX, no AVX-512 kernels.
    features = next(line for line in server.log_path.read_text(errors="replace").splitlines() if "AVX2 = " in line)
    assert "AVX2 = 1" in features and "FMA = 1" in features
    assert "AMX_INT8 = 1" not in features and "AVX512 = 1" not in features


def test_greedy_top5_logprobs_are_well_formed_and_match_the_generated_tokens(server):
    params = SamplingParams(max_new_tokens=24, temperature=0.0, top_logprobs=5)
    [(_, [completion])] = list(backend(server, concurrency=1).generate(PROMPTS[:1], params))

    assert completion.tokens and completion.top_logprobs
    assert len(completion.tokens) == len(completion.top_logprobs) == completion.completion_tokens
    assert "".join(completion.tokens) == completion.text
    for token, candidates in zip(completion.tokens, completion.top_logprobs):
        assert len(candidates) == 5
        logprobs = [lp for _, lp in candidates]
        assert logprobs == sorted(logprobs, reverse=True)
        assert all(lp <= 0.0 for lp in logprobs) and sum(math.exp(lp) for lp in logprobs) <= 1.0 + 1e-4
        assert candidates[0][0] == token  # greedy: the generated token is the most likely one


def test_sampled_tokens_carry_their_own_logprob_within_the_top_k(server):
    """At temperature 1 the sampled token's logprob, as the server reports it, is the one in its top-k."""
    payload = {"model": server.model_name, "prompt": PROMPTS[1], "max_tokens": 16, "temperature": 1.0,
               "logprobs": 5, "seed": 7}
    body = httpx.post(server.base_url + "/completions", json=payload, timeout=120).json()
    content = body["choices"][0]["logprobs"]["content"]  # llama-server's shape, also for /completions
    assert "".join(entry["token"] for entry in content) == body["choices"][0]["text"]
    for entry in content:
        top = {c["token"]: c["logprob"] for c in entry["top_logprobs"]}
        assert len(entry["top_logprobs"]) == 5
        assert entry["logprob"] <= max(top.values()) + 1e-6
        if entry["token"] in top:
            assert entry["logprob"] == pytest.approx(top[entry["token"]], abs=1e-5)


def test_parallel_requests_all_complete_with_logprobs(server):
    params = SamplingParams(max_new_tokens=12, temperature=0.7, top_logprobs=5, seed=3, n=2)
    results = dict(backend(server, concurrency=2 * SLOTS, max_n_per_request=1).generate(PROMPTS, params))
    assert sorted(results) == list(range(len(PROMPTS)))
    for completions in results.values():
        assert len(completions) == 2
        for completion in completions:
            assert completion.tokens and len(completion.tokens) == len(completion.top_logprobs or [])
            assert "".join(completion.tokens) == completion.text
    assert server.running


def test_n_is_honoured_up_to_the_slots_and_halved_beyond_them(server):
    # n=8 on 4 slots: the server refuses it (HTTP 400); the backend asks for 4 per request instead.
    params = SamplingParams(max_new_tokens=8, temperature=1.0, top_logprobs=5, seed=5)
    chains = backend(server, concurrency=2, max_n_per_request=2 * SLOTS)
    results = list(chains.generate_requests([SampleRequest("q", PROMPTS[2], tuple(range(8)))], params))
    assert sorted(r.sample_id for r in results) == list(range(8))
    assert chains.server_supports_n  # it did answer n=4 with 4 choices
    assert len({r.completion.text for r in results}) > 1  # each choice its own seed
    for result in results:
        assert result.completion.tokens and result.completion.top_logprobs


def test_a_killed_server_is_one_line_with_its_signal_and_log():
    with pytest.raises(CotspecError) as raised:
        with start_llama_server(n_ctx=256, n_threads=1, engine="llama-server", parallel=2) as doomed:
            doomed.process.send_signal(signal.SIGKILL)
            doomed.process.wait(timeout=30)
            with pytest.raises(CotspecError, match="no server accepts connections"):
                list(backend(doomed).generate(PROMPTS[:1], SamplingParams(max_new_tokens=4, top_logprobs=5)))
            doomed.check()
    message = str(raised.value)
    assert "\n" not in message
    assert "(llama-server) was killed by SIGKILL while serving" in message and str(doomed.log_path) in message
    assert doomed.log_path.is_file()  # kept: it is the evidence
    doomed.log_path.unlink()


def test_a_file_that_is_no_gguf_fails_to_start_in_one_line(tmp_path):
    bogus = tmp_path / "bogus.gguf"
    bogus.write_text("not a gguf file")
    with pytest.raises(CotspecError, match=r"\(llama-server\) exited with status \d+ while starting") as raised:
        with start_llama_server(bogus, engine="llama-server", startup_timeout_s=60):
            pass
    assert "\n" not in str(raised.value)



def test_its_settings_in_the_environment_are_ignored(monkeypatch):
    # llama-server reads LLAMA_ARG_<FLAG> and LLAMA_API_KEY: a stray one would move it or lock us out.
    monkeypatch.setenv("LLAMA_ARG_PORT", "1")
    monkeypatch.setenv("LLAMA_API_KEY", "would-require-auth")
    monkeypatch.setenv("LLAMA_ARG_N_PARALLEL", "7")
    with start_llama_server(n_ctx=256, n_threads=1, engine="llama-server", parallel=1) as one:
        assert httpx.get(one.base_url + "/models").status_code == 200
        assert "n_slots = 1" in one.log_path.read_text(errors="replace")
