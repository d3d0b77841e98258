"""What a task is: a declarative record of how to load, prompt, extract and score.

A task knows nothing about models. The evaluation harness (and later the teacher sampler and the
training-data builder) only ever go through these fields, so adding a benchmark is one registry entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Mapping, Sequence


@dataclass(frozen=True)
class Example:
    """One question with its gold answer.

    `id` is stable across runs (`<task>/<split>/<index in the original file>`), so predictions and the
    sample store can be keyed on it and resumed.
    """

    id: str
    question: str
    answer: str
    """Gold final answer as text, e.g. ``"18"``, ``"0.5"``, ``"(B)"``."""
    rationale: str | None = None
    """Gold step-by-step solution where the dataset has one (GSM8K), calculator notes removed."""
    meta: Mapping[str, object] = field(default_factory=dict)


class Mode(str, Enum):
    FEW_SHOT = "few-shot"
    ZERO_SHOT = "zero-shot"


@dataclass(frozen=True)
class PromptSpec:
    """How to turn an example into a prompt."""

    mode: Mode = Mode.FEW_SHOT
    cot: bool = True
    """Chain of thought (True) or answer-only (False)."""
    exemplars: str | None = None
    """Few-shot exemplar set: a name the task knows (math: ``original``, ``complex``) or a path to a file
    in the same layout. None means the task's default."""
    shots: int | None = None
    """How many exemplars to keep from the start of the set; None means the task's default."""


Prompter = Callable[[Example], str]


@dataclass(frozen=True)
class Task:
    """A benchmark, declared.

    `make_prompter` is called once per run (it may read exemplar files) and returns the per-example
    prompt builder, so files are not re-read per question.
    """

    name: str
    description: str
    splits: Sequence[str]
    default_split: str
    load: Callable[[Path, str], list[Example]]
    """(data_dir, split) -> examples, in file order. Raises CotspecError naming the file on bad input."""
    make_prompter: Callable[[Path, PromptSpec], Prompter]
    extract: Callable[[str], str | None]
    """Model output -> the answer it commits to, or None."""
    is_correct: Callable[[str | None, str], bool]
    """(extracted, gold) -> correct?"""
    vote_key: Callable[[str], str] = str
    """Extracted answer -> the key self-consistency votes on: answers that `is_correct` would treat
    alike must share it (``"5.0"`` and ``"5"``; ``"(B)"`` and ``"B"``). The default keeps the text."""
    stop: Sequence[str] = ()
    """Stop sequences that end a generation for this task's prompts (the next exemplar's header)."""
    group: str | None = None
    """Name of the group this task reports under as well (``bbh`` for every ``bbh:<task>``)."""
