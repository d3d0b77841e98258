"""Rows of the built dataset: their columns, how they are generated, written and hashed.

Rows are text, tokenizer-independent: the trainer tokenizes (and caches by `content_sha256`). Rows of a
question are written together: format by format (in `FORMATS` order), chain by chain, copies adjacent;
the trainer shuffles.

`iter_rows` yields each row as its plain columns plus `teacher`, the chain's top-k as the store's arrays
(`cotspec.store.TeacherTopK`, or None); `write_rows` makes the three teacher columns from those a batch at a
time (`teacher_columns`), so no Python runs per teacher token.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
from datasets import Features, List, Value

from .exemplars import ExemplarSampler
from .sources import Chain, QuestionPlan
from .teacher_columns import TEACHER_COLUMNS, teacher_columns
from .templates import COT_FORMATS, FORMATS, IN_CONTEXT_FORMATS, render

DATASET_LAYOUT = "cotspec.training-data/1"
"""Name and version of the column layout below; bumped when a column changes meaning."""

FEATURES = Features(
    {
        "id": Value("string"),  # <format>:<question id>[:<chain>][#<copy>], unique
        "question_id": Value("string"),  # gsm8k/train/<line>
        "format": Value("string"),  # one of FORMATS
        "source": Value("string"),  # store (teacher chain) | gold (GSM8K solution) | gold_answer (answer-only rows)
        "prompt": Value("string"),
        "target": Value("string"),  # what the student learns to write after `prompt`
        "exemplar_ids": List(Value("string")),  # question ids of the in-context exemplars, in prompt order
        "has_logprobs": Value("bool"),
        "teacher_tokens": List(Value("string")),  # concatenate exactly to `target` when has_logprobs
        "teacher_top_tokens": List(List(Value("string"))),  # per teacher token, candidates, most likely first
        "teacher_top_logprobs": List(List(Value("float32"))),  # their log-probabilities
    }
)
COLUMNS = tuple(FEATURES)
PLAIN_COLUMNS = tuple(c for c in COLUMNS if c not in TEACHER_COLUMNS)
"""The columns a row from `iter_rows` carries as plain values."""
if COLUMNS != PLAIN_COLUMNS + TEACHER_COLUMNS:  # ContentHasher spells the teacher columns last
    raise RuntimeError(f"the teacher columns must come last, in this order: {TEACHER_COLUMNS}")
_PLAIN_SCHEMA = pa.schema([FEATURES.arrow_schema.field(c) for c in PLAIN_COLUMNS])
_TEACHER_TYPES = [FEATURES.arrow_schema.field(c).type for c in TEACHER_COLUMNS]
_WRITE_BATCH_ROWS = 1000


def natural_counts(questions: Sequence[QuestionPlan], formats: Sequence[str]) -> dict[str, int]:
    """Rows per format before mixture weights: one per question, or one per chain for CoT formats."""
    n_chains = sum(len(q.chains) for q in questions)
    return {fmt: n_chains if fmt in COT_FORMATS else len(questions) for fmt in formats}


def iter_rows(
    questions: Iterable[tuple[QuestionPlan, list[Chain]]],
    formats: Sequence[str],
    repeats: Mapping[str, Sequence[int]],
    sampler: ExemplarSampler | None,
) -> Iterator[dict]:
    """The dataset's rows (plain columns and `teacher`); `repeats[fmt][i]` is how often the format's i-th
    natural row is written."""
    ordered = [fmt for fmt in FORMATS if fmt in formats]
    position = dict.fromkeys(ordered, 0)
    for question, chains in questions:
        example = question.example
        for fmt in ordered:
            for chain in chains if fmt in COT_FORMATS else [None]:
                times = repeats[fmt][position[fmt]]
                position[fmt] += 1
                base_id = f"{fmt}:{example.id}" + (f":{chain.ref.key}" if chain is not None else "")
                for copy in range(times):
                    row_id = base_id if copy == 0 else f"{base_id}#{copy}"
                    exemplars = sampler.draw(row_id, example.id) if fmt in IN_CONTEXT_FORMATS and sampler else []
                    prompt, target = render(fmt, example, exemplars, None if chain is None else chain.text)
                    teacher = None if chain is None else chain.teacher
                    yield {
                        "id": row_id,
                        "question_id": example.id,
                        "format": fmt,
                        "source": "gold_answer" if chain is None else chain.ref.source,
                        "prompt": prompt,
                        "target": target,
                        "exemplar_ids": [e.id for e in exemplars],
                        "has_logprobs": teacher is not None,
                        "teacher": teacher,
                    }
    for fmt in ordered:
        if position[fmt] != len(repeats[fmt]):
            raise RuntimeError(f"{fmt}: planned {len(repeats[fmt])} rows but generated {position[fmt]}")


class ContentHasher:
    """SHA-256 of the rows in order, independent of Arrow's byte layout and of the tokenizer.

    Per row: the compact JSON of every column except the log-probabilities, then those as little-endian
    float32 bytes (the precision they are stored in), whose count the JSON's top tokens fix.
    """

    def __init__(self) -> None:
        self._sha = hashlib.sha256(DATASET_LAYOUT.encode())

    def update(self, row: Mapping[str, Any]) -> None:
        """Hash a row given as every column's Python value (lists for the teacher columns)."""
        head = [row[c] for c in COLUMNS if c != "teacher_top_logprobs"]
        self._sha.update(_compact_json(head).encode("utf-8"))
        logprobs = itertools.chain.from_iterable(row["teacher_top_logprobs"])
        self._sha.update(np.fromiter(logprobs, dtype="<f4").tobytes())

    def update_spelled(self, plain: list, teacher_tail: bytes) -> None:
        """Hash a row given as its `PLAIN_COLUMNS` values and its teacher columns already spelled.

        The teacher columns come last (`COLUMNS`), so the bytes `update` hashes are the plain columns'
        JSON list without its `]`, then `teacher_tail`: `,<teacher_tokens JSON>,<teacher_top_tokens
        JSON>]<log-prob bytes>` (what `teacher_columns` makes, a batch at a time).
        """
        self._sha.update(_compact_json(plain)[:-1].encode("utf-8"))
        self._sha.update(teacher_tail)

    def hexdigest(self) -> str:
        return self._sha.hexdigest()


def write_rows(rows: Iterable[dict], path: Path) -> tuple[int, str]:
    """Stream `rows` (as `iter_rows` yields them) into an Arrow IPC stream file (what
    `datasets.Dataset.from_file` maps).

    Returns (rows written, content SHA-256). Memory stays at one batch of rows.
    """
    schema = FEATURES.arrow_schema
    hasher = ContentHasher()
    written = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for batch in _batched(rows, _WRITE_BATCH_ROWS):
            teacher = teacher_columns([row["teacher"] for row in batch], _TEACHER_TYPES)
            for row, tail in zip(batch, teacher.hash_tails):
                hasher.update_spelled([row[c] for c in PLAIN_COLUMNS], tail)
            plain = pa.RecordBatch.from_pylist(batch, schema=_PLAIN_SCHEMA)
            columns = [*plain.columns, teacher.tokens, teacher.top_tokens, teacher.top_logprobs]
            writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            written += len(batch)
    return written, hasher.hexdigest()


def _compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _batched(rows: Iterable[dict], size: int) -> Iterator[list[dict]]:
    iterator = iter(rows)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
