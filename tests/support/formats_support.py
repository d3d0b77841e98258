"""Helpers for the training-data tests: raw GSM8K parsing and teacher-like stored samples."""

from __future__ import annotations

import hashlib
import itertools
import json
import re

import numpy as np

from cotspec.formats import DATASET_LAYOUT, FEATURES
from cotspec.store import SampleRow


def raw_solution(record: dict) -> tuple[str, str]:
    """(steps without calculator notes, final answer without commas) of one raw GSM8K record."""
    steps, final = record["answer"].split("\n#### ")
    return re.sub(r"<<[^>]*>>", "", steps).strip(), final.replace(",", "")


def tokenize_like_a_teacher(text: str) -> list[str]:
    """Split text into pieces that concatenate back to it, as an API's `logprobs.content` tokens do."""
    return re.findall(r"\s*[^\s\d]+|\s*\d|\s+", text)


def teacher_row(question_id: str, index: int, text: str, *, correct: bool = True, logprobs: bool = True,
                tokens: list[str] | None = None) -> SampleRow:
    """A stored sample with top-3 candidates per position; `tokens` overrides the teacher's tokenization."""
    tokens = tokens if tokens is not None else tokenize_like_a_teacher(text)
    top = [[(tok, -0.125 * (p % 7)), ("¿" + tok, -2.5), (" alt", -4.75 - p)] for p, tok in enumerate(tokens)]
    return SampleRow(
        question_id=question_id, sample_index=index, run_id=1, prompt_sha256="p" * 64, text=text,
        finish_reason="stop", extracted=None, correct=correct, prompt_tokens=120,
        completion_tokens=len(tokens), generated_tokens=len(tokens),
        tokens=tokens if logprobs else None, top_logprobs=top if logprobs else None,
    )  # fmt: skip


def reference_content_hash(rows: list[dict]) -> str:
    """A build's `content_sha256` over rows of plain Python values, as `ContentHasher.update` computed it
    before the build kept the teacher's top-k as arrays (a copy, so a change to either shows)."""
    sha = hashlib.sha256(DATASET_LAYOUT.encode())
    for row in rows:
        head = [row[c] for c in FEATURES if c != "teacher_top_logprobs"]
        sha.update(json.dumps(head, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
        logprobs = itertools.chain.from_iterable(row["teacher_top_logprobs"])
        sha.update(np.fromiter(logprobs, dtype="<f4").tobytes())
    return sha.hexdigest()
