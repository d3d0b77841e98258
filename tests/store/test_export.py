"""Exports read back with `datasets.load_dataset`, as training code will read them."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from cotspec.errors import CotspecError
from cotspec.store import SampleStore
from support.sample_rows import examples, make_row, run_config


@pytest.fixture
def filled_store(tmp_path):
    path = tmp_path / "run.db"
    with SampleStore.open(path, writable=True) as store:
        run_id = store.register_run(run_config())
        store.add_questions(examples(3))
        rows = [
            make_row("gsm8k/train/0", 0, run_id=run_id, correct=True, n_tokens=9),
            make_row("gsm8k/train/0", 1, run_id=run_id, correct=False, n_tokens=4),
            make_row("gsm8k/train/0", 2, run_id=run_id, correct=True, n_tokens=9),
            make_row("gsm8k/train/1", 0, run_id=run_id, correct=True, logprobs=False, text="no top-k"),
            make_row("gsm8k/train/2", 0, run_id=run_id, correct=True, text="dup", logprobs=False),
            make_row("gsm8k/train/2", 1, run_id=run_id, correct=True, text="dup", logprobs=False),
        ]
        store.add_many(rows)
    return path, rows


@pytest.mark.parametrize("fmt,loader", [("jsonl", "json"), ("parquet", "parquet")])
def test_export_loads_with_datasets(filled_store, tmp_path, fmt, loader):
    path, rows = filled_store
    out = tmp_path / f"train.{fmt}"
    with SampleStore.open(path) as store:
        assert store.export(out, fmt, correct_only=False) == len(rows)
    ds = datasets.load_dataset(loader, data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
    assert len(ds) == len(rows)
    expected_columns = {"question_id", "sample_index", "question", "gold", "text", "extracted", "correct",
                        "finish_reason", "prompt_tokens", "completion_tokens", "tokens", "top_tokens", "top_logprobs"}
    assert expected_columns <= set(ds.column_names)
    for record, row in zip(ds, rows):
        assert (record["question_id"], record["sample_index"], record["text"], record["correct"]) == (
            row.question_id, row.sample_index, row.text, row.correct,
        )  # fmt: skip
        assert record["gold"] == row.question_id.rsplit("/", 1)[1]
        if row.tokens is None:
            assert record["tokens"] is None and record["top_logprobs"] is None
            continue
        assert record["tokens"] == row.tokens
        assert record["top_tokens"] == [[t for t, _ in pos] for pos in row.top_logprobs]
        for got, pos in zip(record["top_logprobs"], row.top_logprobs):
            np.testing.assert_allclose(got, [lp for _, lp in pos], rtol=1e-6)


def test_export_filters(filled_store, tmp_path):
    path, _ = filled_store
    out = tmp_path / "correct.jsonl"
    with SampleStore.open(path) as store:
        assert store.export(out, "jsonl") == 5  # --correct-only is the default
        ds = datasets.load_dataset("json", data_files=str(out), split="train", cache_dir=str(tmp_path / "hf"))
        assert [(r["question_id"], r["sample_index"]) for r in ds] == [
            ("gsm8k/train/0", 0), ("gsm8k/train/0", 2), ("gsm8k/train/1", 0),
            ("gsm8k/train/2", 0), ("gsm8k/train/2", 1),
        ]  # fmt: skip
        assert store.export(out, "jsonl", dedup=True) == 4  # gsm8k/train/2#1 repeats #0's text
        assert store.export(out, "jsonl", max_per_question=1) == 3
        assert store.export(out, "jsonl", correct_only=False, max_per_question=2) == 5


def test_export_refuses_to_overwrite_the_store_and_unknown_formats(filled_store, tmp_path):
    path, _ = filled_store
    with SampleStore.open(path) as store:
        with pytest.raises(CotspecError, match="is the sample store itself"):
            store.export(path, "jsonl")
        with pytest.raises(CotspecError, match="^format: must be one of jsonl, parquet"):
            store.export(tmp_path / "x.csv", "csv")
    assert not list(tmp_path.glob(".x.csv*"))
