"""`cotspec store stats|export` end to end through the real entry point."""

from __future__ import annotations

import hashlib
import re

import datasets
import pytest

from cotspec.store import SampleStore
from support.sample_rows import examples, make_row, run_config


@pytest.fixture
def store_path(tmp_path):
    """3 questions x 4 chains: q0 has 3 correct, q1 none, q2 one; 2 chains lack logprobs."""
    path = tmp_path / "run.db"
    correct = {0: [1, 1, 0, 1], 1: [0, 0, 0, 0], 2: [0, 1, 0, 0]}
    with SampleStore.open(path, writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(3))
        store.add_many([
            make_row(f"gsm8k/train/{q}", i, run_id=run_id, correct=bool(c), logprobs=(q, i) not in {(1, 0), (2, 3)})
            for q, flags in correct.items() for i, c in enumerate(flags)
        ])  # fmt: skip
    return path


def _row(stdout: str, label: str) -> str:
    match = re.search(rf"{re.escape(label)}\s*│\s*([^│]+?)\s*│", stdout)
    assert match, f"no row {label!r} in:\n{stdout}"
    return match.group(1)


def test_stats_prints_the_numbers(run_cli, store_path):
    digest = hashlib.sha256(store_path.read_bytes()).hexdigest()
    result = run_cli("store", "stats", store_path)
    assert result.exit_code == 0, result.stderr
    assert _row(result.stdout, "questions") == "3"
    assert _row(result.stdout, "chains") == "12"
    assert _row(result.stdout, "correct chains") == "4"
    assert _row(result.stdout, "correct per question") == "1.33"
    assert _row(result.stdout, "questions with >= 1 correct") == "66.7%"
    assert _row(result.stdout, "pass@1") == f"{100 * (3 / 4 + 0 + 1 / 4) / 3:.1f}%"
    assert _row(result.stdout, "pass@4") == "66.7%"
    assert _row(result.stdout, "chains without logprobs") == "2"
    assert "teacher-7b" in result.stdout
    assert "warning:" in result.stderr and "cross-entropy" in result.stderr
    assert hashlib.sha256(store_path.read_bytes()).hexdigest() == digest


@pytest.mark.parametrize("fmt,loader", [("jsonl", "json"), ("parquet", "parquet")])
def test_export_writes_what_datasets_reads(run_cli, store_path, tmp_path, fmt, loader):
    out = tmp_path / "exports" / f"train.{fmt}"
    result = run_cli("store", "export", store_path, "--format", fmt, "--file", out, "--max-per-question", "2")
    assert result.exit_code == 0, result.stderr
    assert "wrote 3 correct chains" in result.stdout  # q0: 2 of its 3 correct (capped), q2: 1
    ds = datasets.load_dataset(loader, data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert [(r["question_id"], r["sample_index"]) for r in ds] == [
        ("gsm8k/train/0", 0), ("gsm8k/train/0", 1), ("gsm8k/train/2", 1),
    ]  # fmt: skip
    assert all(r["correct"] for r in ds)

    result = run_cli("store", "export", store_path, "--format", fmt, "--out", out, "--all")  # --out: hidden alias
    assert result.exit_code == 0 and "wrote 12 chains" in result.stdout


@pytest.mark.parametrize("command", ["stats", "export"])
def test_bad_store_files_are_one_line_errors(run_cli, tmp_path, command):
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("this is not a database\n" * 50)
    extra = ["--out", str(tmp_path / "o.jsonl")] if command == "export" else []
    for path, message in [(not_sqlite, "not a SQLite sample store"), (tmp_path / "absent.db", "no such sample store")]:
        result = run_cli("store", command, path, *extra)
        assert result.exit_code == 2
        assert result.stderr.startswith("error: ") and message in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "absent.db").exists()
    assert not (tmp_path / "o.jsonl").exists()


def test_export_rejects_unknown_format(run_cli, store_path, tmp_path):
    result = run_cli("store", "export", store_path, "--format", "csv", "--out", tmp_path / "o.csv")
    assert result.exit_code == 2 and "--format must be one of jsonl, parquet" in result.stderr


def test_export_with_no_correct_chain_writes_nothing_and_says_so(run_cli, tmp_path):
    path = tmp_path / "wrong.db"
    with SampleStore.open(path, writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(1))
        store.add_many([make_row("gsm8k/train/0", i, run_id=run_id, correct=False) for i in range(2)])
    out = tmp_path / "chains.jsonl"
    out.write_text('{"earlier": "export"}\n')

    result = run_cli("store", "export", path, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {path}: no chains pass the filters; nothing written, {out} left as it was; "
        "--all exports the incorrect chains too"
    )
    assert out.read_text() == '{"earlier": "export"}\n'
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".chains")) == []
    assert run_cli("store", "export", path, "--out", out, "--all").exit_code == 0
    assert len(datasets.load_dataset("json", data_files=str(out), split="train")) == 2
