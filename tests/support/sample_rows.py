"""Sample-store building blocks shared by store, teacher and CLI tests: a run config, questions, rows.

Rows look like a real teacher's: tokens concatenate to the text, top-k lists are sorted, some positions
have fewer than k candidates, and token strings include non-ASCII and OpenAI's `bytes:` spelling.
"""

from __future__ import annotations

import random

from cotspec.store import RunConfig, SampleRow
from cotspec.tasks.base import Example

TOKENS = ["The", " answer", " is", " 18", ".", "\n", " Janet", "’s", " ducks", "bytes:\\xe2\\x80", "", " 🦆"]


def run_config(**overrides) -> RunConfig:
    fields = dict(
        teacher="teacher-7b",
        task="gsm8k",
        prompt="complex x8",
        prompt_sha256="a" * 64,
        temperature=0.5,
        top_p=1.0,
        top_logprobs=5,
        max_new_tokens=256,
        stop=("\n\n", "\nQuestion:"),
        answer_cut="The answer is",
    )
    fields.update(overrides)
    return RunConfig(**fields)


def examples(count: int) -> list[Example]:
    return [Example(id=f"gsm8k/train/{i}", question=f"Question number {i}?", answer=str(i)) for i in range(count)]


def make_row(
    question_id: str,
    sample_index: int,
    *,
    run_id: int = 1,
    text: str | None = None,
    correct: bool = False,
    n_tokens: int = 6,
    k: int = 5,
    logprobs: bool = True,
    seed: int = 0,
) -> SampleRow:
    """A row whose tokens concatenate to its text and whose top-k lists are sorted, like a real teacher's."""
    rng = random.Random(f"{question_id}#{sample_index}#{seed}")
    tokens = [rng.choice(TOKENS) for _ in range(n_tokens)]
    top = []
    for token in tokens:
        width = rng.randint(1, k)  # servers may return fewer than k candidates
        others = rng.sample([t for t in TOKENS if t != token], width - 1)
        values = sorted((rng.uniform(-12, 0) for _ in range(width)), reverse=True)
        top.append(list(zip([token, *others], values)))
    return SampleRow(
        question_id=question_id,
        sample_index=sample_index,
        run_id=run_id,
        prompt_sha256="p" * 64,
        text=text if text is not None else "".join(tokens),
        finish_reason="stop",
        extracted="18" if correct else "7",
        correct=correct,
        prompt_tokens=100 + sample_index,
        completion_tokens=n_tokens,
        generated_tokens=n_tokens + 2,
        tokens=tokens if logprobs else None,
        top_logprobs=top if logprobs else None,
    )


