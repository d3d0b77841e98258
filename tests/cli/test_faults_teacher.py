"""Fault cases of the teacher side (issue 8): servers that die, refuse, or are not ours; what is stored stays.

Each runs the real CLI against real llama.cpp servers and real SQLite stores. Every failure must be one
line, exit 2, no traceback, and leave what was stored before byte-identical.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support.faults import assert_one_line_error, snapshot
from support.prompts import PROMPT_FILE

from cotspec.store import SampleStore
from cotspec.teacher.server import free_port, start_llama_server


def sample_args(tmp_path, data_dir, base_url, *extra, n=1, limit=2, max_tokens=8, temperature=0.5):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text(PROMPT_FILE)
    return [
        "sample", "--tasks", "gsm8k", "--split", "train", "--limit", str(limit), "--n", str(n),
        "--temperature", str(temperature), "--top-logprobs", "5", "--max-new-tokens", str(max_tokens),
        "--base-urls", base_url, "--model", "teacher", "--concurrency", "1",
        "--store", str(tmp_path / "run.db"), "--data-dir", str(data_dir), "--prompt-file", str(prompt), *extra,
    ]  # fmt: skip


def stored_rows(path) -> list[tuple]:
    with SampleStore.open(path) as store:
        return sorted((s.question_id, s.sample_index, s.text, tuple(s.tokens or ())) for s in store.iter_samples())


@pytest.fixture
def listening_port():
    """A port another program listens on (a plain socket that accepts nothing)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


# ---- the quick table: each case fails before any teacher work ---------------------------------------


CASES = {
    "sample-connection-refused": (
        lambda tmp_path, data_dir, port: sample_args(tmp_path, data_dir, f"http://127.0.0.1:{free_port()}/v1"),
        ["no server accepts connections", "connection refused", "keeps every finished chain"],
    ),
    "sample-api-key-env-unset": (
        lambda tmp_path, data_dir, port: sample_args(
            tmp_path, data_dir, "http://127.0.0.1:9/v1", "--api-key-env", "COTSPEC_UNSET_KEY_VARIABLE"
        ),
        ["--api-key-env: COTSPEC_UNSET_KEY_VARIABLE", "not set"],
    ),
    "serve-teacher-port-in-use": (
        lambda tmp_path, data_dir, port: ["serve-teacher", "--port", str(port)],
        ["cannot listen on 127.0.0.1:", "another program"],
    ),
    "serve-teacher-garbage-gguf": (
        lambda tmp_path, data_dir, port: ["serve-teacher", "--port", "0", "--model", str(garbage_gguf(tmp_path))],
        ["exited with status", "while starting", "log"],
    ),
}


def garbage_gguf(tmp_path):
    path = tmp_path / "garbage.gguf"
    path.write_bytes(bytes(range(256)) * 4)
    return path


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_fault_case_is_one_line_and_loses_nothing(case, run_cli, tmp_path, data_dir, listening_port):
    make_args, fragments = CASES[case]
    args = make_args(tmp_path, data_dir, listening_port)
    before = snapshot(tmp_path)
    started = time.monotonic()
    result = run_cli(*args)
    assert_one_line_error(result, *fragments)
    # Refused connections and taken ports are known at once: no backing off for minutes.
    assert time.monotonic() - started < 60
    after = {path: data for path, data in snapshot(tmp_path).items() if path in before}
    assert after == before


# ---- a server that dies in the middle -----------------------------------------------------------------


def test_a_server_killed_mid_sampling_stops_the_run_and_every_finished_chain_is_kept(run_cli, tmp_path, data_dir):
    store = tmp_path / "run.db"

    def rows_now() -> int:
        if not store.exists():
            return 0
        with SampleStore.open(store) as opened:
            return len(opened)

    with start_llama_server(n_ctx=512, n_threads=1) as server:
        def kill_after_the_first_chain() -> None:
            deadline = time.monotonic() + 120
            while rows_now() < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            server.process.kill()

        killer = threading.Thread(target=kill_after_the_first_chain)
        killer.start()
        result = run_cli(*sample_args(tmp_path, data_dir, server.base_url, n=4, limit=4, max_tokens=24))
        killer.join()
    line = assert_one_line_error(result, "sampling stopped", "no server accepts connections", "keeps every finished chain")
    kept = stored_rows(store)
    assert 1 <= len(kept) < 16 and f"({len(kept)} of 16)" in line

    # The same command against a new server samples only what is missing; the kept chains are untouched.
    with start_llama_server(n_ctx=512, n_threads=1) as server:
        again = run_cli(*sample_args(tmp_path, data_dir, server.base_url, n=4, limit=4, max_tokens=24))
    assert again.exit_code == 0, again.stderr
    assert f"wrote {16 - len(kept)} chains" in again.stdout
    after = stored_rows(store)
    assert len(after) == 16 and set(kept) <= set(after)


def test_a_failed_first_attempt_does_not_claim_the_store_for_its_settings(run_cli, tmp_path, data_dir, llama_server):
    # D6: the mistyped URL fails before any chain; the corrected command, with other settings, must run.
    dead = f"http://127.0.0.1:{free_port()}/v1"
    failed = run_cli(*sample_args(tmp_path, data_dir, dead, temperature=0.9))
    assert_one_line_error(failed, "no server accepts connections")
    fixed = run_cli(*sample_args(tmp_path, data_dir, llama_server.base_url, temperature=0.5))
    assert fixed.exit_code == 0, fixed.stderr
    with SampleStore.open(tmp_path / "run.db") as opened:
        assert [run.temperature for run in opened.runs().values()] == [0.5]
        assert len(opened) == 2
    # A store that does hold chains still refuses other settings.
    refused = run_cli(*sample_args(tmp_path, data_dir, llama_server.base_url, temperature=0.9))
    assert_one_line_error(refused, "holds samples drawn with temperature=0.5")
