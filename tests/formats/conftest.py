"""Fixtures for the training-data builder: real GSM8K, and a real sample store with teacher-like chains."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.formats_support import teacher_row, tokenize_like_a_teacher
from support.sample_rows import run_config

from cotspec.store import SampleRow, SampleStore
from cotspec.tasks import gsm8k_dev_ids
from cotspec.tasks.math import load_gsm8k


@pytest.fixture(scope="session")
def gsm8k_train(data_dir):
    return load_gsm8k(data_dir, "train")


@pytest.fixture(scope="session")
def dev_ids(data_dir) -> frozenset[str]:
    return gsm8k_dev_ids(data_dir)


@pytest.fixture(scope="session")
def raw_train(data_dir) -> list[dict]:
    """gsm8k/train.jsonl read straight from the file, for expected strings built without cotspec."""
    with open(data_dir / "gsm8k" / "train.jsonl", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


@dataclass
class TeacherStore:
    path: Path
    chains: dict[tuple[str, int], SampleRow]
    """Every stored sample by (question id, sample index)."""
    dev_id: str


@pytest.fixture
def teacher_store(tmp_path, gsm8k_train, dev_ids) -> TeacherStore:
    """Samples for train/0..3 and one gsm8k-dev question, covering each way a chain is kept or dropped.

    train/0: s0 correct with logprobs, s1 wrong, s2 duplicate of s0, s3 tokens that do not spell the
             text, s4 correct without logprobs.    train/1: s0 = GSM8K's own solution, with logprobs.
    train/2: only a wrong chain.                   dev question: s0 correct (must never be used).
    """
    q0, q1, q2 = gsm8k_train[0], gsm8k_train[1], gsm8k_train[2]
    dev = next(ex for ex in gsm8k_train if ex.id in dev_ids)
    chain0 = "She sold 48 / 2 = 24 clips in May.\nIn total 48 + 24 = 72 clips.\nThe answer is 72"
    chain0b = "April: 48. May: half of 48 is 24.\n48 + 24 = 72.\nThe answer is 72"
    gold1 = f"{q1.rationale}\nThe answer is {q1.answer}"
    rows = [
        teacher_row(q0.id, 0, chain0),
        teacher_row(q0.id, 1, "48 * 2 = 96.\nThe answer is 96", correct=False),
        teacher_row(q0.id, 2, chain0),
        teacher_row(q0.id, 3, chain0b, tokens=tokenize_like_a_teacher(chain0b.replace("April", "Apr"))),
        teacher_row(q0.id, 4, "24 + 48 = 72\nThe answer is 72", logprobs=False),
        teacher_row(q1.id, 0, gold1),
        teacher_row(q2.id, 0, "The answer is 1", correct=False),
        teacher_row(dev.id, 0, f"The answer is {dev.answer}"),
    ]
    path = tmp_path / "teacher.db"
    with SampleStore.open(path, writable=True) as store:
        store.register_run(run_config())
        store.add_questions([q0, q1, q2, dev])
        store.add_many(rows)
    return TeacherStore(path, {(r.question_id, r.sample_index): r for r in rows}, dev.id)
