"""`cotspec sample` end to end: in-process, and as a subprocess killed with SIGKILL and restarted.

Both run against the real llama.cpp server (SmolLM2-135M) through the counting proxy, with a one-shot
prompt file and short chains so the CPU-only server answers in a couple of seconds per chain.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
from support.prompts import PROMPT_FILE

from cotspec.align.pieces import TokenStyle, piece_bytes
from cotspec.store import SampleStore


def _origin(server) -> str:
    return server.base_url.removesuffix("/v1")


def _completions_events(proxy) -> list:
    return [e for e in proxy.events() if e.path.endswith("/completions")]


def _sample_args(tmp_path, data_dir, base_url, model, *, n, limit, max_tokens):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_FILE)
    return [
        "sample", "--tasks", "gsm8k", "--split", "train", "--limit", str(limit), "--n", str(n),
        "--temperature", "0.5", "--top-logprobs", "5", "--max-new-tokens", str(max_tokens),
        "--base-urls", base_url, "--model", model, "--concurrency", "2",
        "--store", str(tmp_path / "run.db"), "--data-dir", str(data_dir), "--prompt-file", str(prompt),
    ]  # fmt: skip


def test_sample_writes_the_store_and_a_rerun_does_nothing(run_cli, tmp_path, data_dir, llama_server, fault_proxy):
    proxy = fault_proxy(_origin(llama_server), fault_rate=0.0)
    args = _sample_args(tmp_path, data_dir, proxy.base_url, llama_server.model_name, n=2, limit=2, max_tokens=12)
    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert "wrote 4 chains" in result.stdout and "holds 4 of 4" in result.stdout
    assert len(_completions_events(proxy)) == 4

    again = run_cli(*args)
    assert again.exit_code == 0, again.stderr
    assert "all 4 chains (2 questions x 2) already stored; nothing to do" in again.stdout
    assert len(_completions_events(proxy)) == 4

    stats = run_cli("store", "stats", tmp_path / "run.db")
    assert stats.exit_code == 0 and "chains without logprobs" in stats.stdout
    assert f"teacher {llama_server.model_name}" in stats.stdout


def test_sample_flag_errors_are_one_line(run_cli, tmp_path, data_dir):
    result = run_cli("sample", "--store", tmp_path / "run.db", "--data-dir", data_dir)
    assert result.exit_code == 2 and result.stderr == "error: --model: is required and has no default; set it\n"
    result = run_cli("sample", "--store", tmp_path / "run.db", "--base-url", "http://127.0.0.1:9/v1", "--model", "m",
                     "--task", "gsm8k", "--split", "nope", "--data-dir", data_dir)
    assert result.exit_code == 2 and result.stderr.startswith("error: --split: 'nope'") and result.stderr.count("\n") == 1
    assert not (tmp_path / "run.db").exists()
    result = run_cli("sample", "--store", tmp_path / "run.db", "--model", "m", "--max-new-tokens", "0", "--data-dir", data_dir)
    assert result.exit_code == 2 and result.stderr == "error: --max-new-tokens: must be >= 1, got 0\n"
    # Old spellings are hidden aliases: --max-tokens is --max-new-tokens, --teacher is --model.
    result = run_cli("sample", "--store", tmp_path / "run.db", "--teacher", "m", "--max-tokens", "0", "--data-dir", data_dir)
    assert result.exit_code == 2 and result.stderr == "error: --max-new-tokens: must be >= 1, got 0\n"
    assert not (tmp_path / "run.db").exists()


def test_sample_help_shares_names_and_defaults_with_eval(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # no flag name shortened with an ellipsis
    monkeypatch.setenv("TERMINAL_WIDTH", "250")
    sample, evaluate = run_cli("sample", "--help").stdout, run_cli("eval", "--help").stdout
    for flag in ("--model", "--tasks", "--max-new-tokens", "--seed", "--base-urls", "--batch-size", "--backend"):
        assert flag in sample and flag in evaluate, flag
    for hidden in ("--teacher", "--max-tokens", "--base-url ", "--task "):
        assert hidden not in sample, hidden


# ---- crash safety -------------------------------------------------------------------------------------

QUESTIONS, CHAINS, MAX_TOKENS = 5, 2, 8
SIGNALS = [signal.SIGKILL, signal.SIGKILL, signal.SIGKILL, signal.SIGINT, signal.SIGKILL, signal.SIGKILL]
"""One interruption per run but the last: five kill -9 and one Ctrl-C."""
GRACE_S = 1.0
"""A response the proxy finished sending less than this long before the kill counts as still in flight:
the client may not have parsed and committed it yet."""


def _rows(path) -> int:
    if not path.exists():
        return 0
    with SampleStore.open(path) as store:
        return len(store)


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Attempt:
    started: float
    ended: float
    interrupted: bool
    rows_gained: int
    sent: int = 0
    in_flight: int = 0


@pytest.mark.slow
def test_kill_at_random_moments_loses_and_repeats_nothing(tmp_path, data_dir, llama_server, fault_proxy):
    proxy = fault_proxy(_origin(llama_server), fault_rate=0.0)
    store = tmp_path / "run.db"
    # The real entry point, as the `cotspec` console script calls it.
    command = [sys.executable, "-c", "from cotspec.cli.main import main; main()",
               *_sample_args(tmp_path, data_dir, proxy.base_url, llama_server.model_name,
                             n=CHAINS, limit=QUESTIONS, max_tokens=MAX_TOKENS)]  # fmt: skip
    rng = random.Random(20230131)
    attempts: list[Attempt] = []

    def settled() -> bool:
        return len(_completions_events(proxy)) == proxy.stats()["upstream_calls"]

    for index in range(len(SIGNALS) + 1):
        # The server answers one request at a time: let it finish the killed run's requests first, so the
        # kill clock below measures this run's own progress.
        _wait_for(settled, 120, "the server to finish the killed run's requests")
        rows_before = _rows(store)
        requests_before = proxy.stats()["requests"]
        log_path = tmp_path / f"attempt{index}.log"
        with log_path.open("wb") as log:
            started = time.monotonic()
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            sig = SIGNALS[index] if index < len(SIGNALS) else None
            if sig is not None:
                # Kill moments, each after a seeded random delay: in start-up (imports, data, store
                # creation); after this run's first request (so a loaded machine's slow start-up does not
                # turn every kill into a start-up kill); or after its first committed chain (so some runs
                # die between commits, having made progress).
                if index % 2 == 1:
                    _wait_for(lambda: proxy.stats()["requests"] > requests_before or process.poll() is not None,
                              120, "the first request")
                elif index > 0:
                    _wait_for(lambda: _rows(store) > rows_before or process.poll() is not None, 120, "a commit")
                time.sleep(rng.uniform(0.2, 2.0) if index == 0 else rng.uniform(0.0, 3.0))
            interrupted = sig is not None and process.poll() is None
            if interrupted:
                process.send_signal(sig)
            process.wait(timeout=300)
            ended = time.monotonic()
        attempts.append(Attempt(started, ended, interrupted, _rows(store) - rows_before))
        output = log_path.read_text()
        if sig == signal.SIGINT and interrupted:
            assert process.returncode == 130 and "re-run the same command to resume" in output, output
            assert "Traceback" not in output, output
        if not interrupted:
            assert process.returncode == 0, output
            break

    _wait_for(settled, 120, "the proxy to settle")
    events = _completions_events(proxy)
    for attempt in attempts:
        mine = [e for e in events if attempt.started <= e.arrived <= attempt.ended]
        attempt.sent = len(mine)
        if attempt.interrupted:
            attempt.in_flight = sum(1 for e in mine if e.answered > attempt.ended - GRACE_S)
    assert sum(a.sent for a in attempts) == len(events)

    interrupted = [a for a in attempts if a.interrupted]
    assert len(interrupted) >= 5, f"the run finished before it was killed 5 times: {attempts}"
    assert sum(1 for a in interrupted if a.in_flight) >= 3, f"too few kills landed during a request: {attempts}"
    assert sum(1 for a in interrupted if a.rows_gained) >= 2, f"too few killed runs had made progress: {attempts}"
    for attempt in attempts:
        # Each chain comes in its own response (llama.cpp ignores n): a response either became a row, or
        # it was in flight when its client died. The run that was not killed wastes nothing.
        assert 0 <= attempt.sent - attempt.rows_gained <= attempt.in_flight, attempts
    assert len(events) <= QUESTIONS * CHAINS + sum(a.in_flight for a in attempts), attempts

    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute(
            "SELECT count(*), count(DISTINCT question_id || '#' || sample_index) FROM samples"
        ).fetchone() == (QUESTIONS * CHAINS, QUESTIONS * CHAINS)
        per_question = conn.execute(
            "SELECT group_concat(sample_index) FROM (SELECT * FROM samples ORDER BY sample_index) GROUP BY question_id"
        ).fetchall()
    assert per_question == [(",".join(map(str, range(CHAINS))),)] * QUESTIONS
    with SampleStore.open(store) as opened:
        assert opened.check_integrity() == QUESTIONS * CHAINS  # every blob decodes, n == token count
        for sample in opened.iter_samples():
            assert b"".join(piece_bytes(t, TokenStyle.TEXT) for t in sample.tokens) == sample.text.encode()


# ---- in-process teacher (transformers) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    """A 2-layer random Llama with ByT5's byte tokenizer, saved as a model directory (no files needed)."""
    from support.tiny_models import save_model_dir, tiny_llama
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    model = tiny_llama(tokenizer, hidden_size=32, intermediate_size=64, num_attention_heads=2, initializer_range=0.02)
    return save_model_dir(model, tokenizer, tmp_path_factory.mktemp("tiny-teacher"))


def _teacher_args(tmp_path, data_dir, teacher, *, n):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_FILE)
    return [
        "sample", "--teacher", str(teacher), "--dtype", "float32", "--limit", "2", "--n", str(n),
        "--max-tokens", "10", "--seed", "7", "--store", str(tmp_path / "run.db"), "--data-dir", str(data_dir),
        "--prompt-file", str(prompt),
    ]  # fmt: skip


def test_sample_with_an_in_process_teacher_resumes_without_repeating_chains(run_cli, tmp_path, data_dir, tiny_teacher):
    first = run_cli(*_teacher_args(tmp_path, data_dir, tiny_teacher, n=2))
    assert first.exit_code == 0, first.stderr
    assert "wrote 4 chains" in first.stdout
    more = run_cli(*_teacher_args(tmp_path, data_dir, tiny_teacher, n=4))
    assert more.exit_code == 0, more.stderr
    assert "wrote 4 chains" in more.stdout and "holds 8 of 8" in more.stdout

    with SampleStore.open(tmp_path / "run.db") as store:
        assert store.check_integrity() == 8
        samples = list(store.iter_samples())
        (run,) = store.runs().values()
    assert run.teacher == str(tiny_teacher) and run.top_logprobs == 5
    by_question: dict[str, list[str]] = {}
    for sample in samples:
        assert sample.has_logprobs and len(sample.tokens) == sample.completion_tokens
        assert all(len(top) == 5 for top in sample.top_logprobs)
        by_question.setdefault(sample.question_id, []).append(sample.text)
    assert sorted(by_question) == ["gsm8k/train/0", "gsm8k/train/1"]
    for texts in by_question.values():
        # The resumed run used the same --seed: its chains must still be new draws, not the stored ones again.
        assert len(set(texts)) == 4, texts
