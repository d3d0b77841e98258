"""The four distillation data formats of Fu et al. (2023), as pure functions from examples to strings.

    zero_shot_answer    Q: {q}\nA:                                   -> " The answer is {a}"
    zero_shot_cot       Q: {q}\nLet's think step by step\n           -> chain
    in_context_answer   k x "Q: {e}\nA: The answer is {a_e}", blank-line separated,
                        then the zero-shot answer prompt             -> " The answer is {a}"
    in_context_cot      k x "Q: {e}\nLet's think step by step\n{gold chain of e}", blank-line separated,
                        then the zero-shot CoT prompt                -> chain

The zero-shot prompts are the evaluation harness's own templates (`cotspec.tasks.prompts`), imported
rather than restated, so a model is trained on byte-for-byte the prompts it is evaluated with. (The
issue wrote the answer-only prompt as `Q: {q} A:`; the harness uses `Q: {q}\nA:`, and training follows it.)
"""

from __future__ import annotations

import re
from typing import Sequence

from ..tasks.base import Example
from ..tasks.prompts import zero_shot_answer_only_prompt, zero_shot_cot_prompt

ZERO_SHOT_ANSWER = "zero_shot_answer"
ZERO_SHOT_COT = "zero_shot_cot"
IN_CONTEXT_ANSWER = "in_context_answer"
IN_CONTEXT_COT = "in_context_cot"
FORMATS = (ZERO_SHOT_ANSWER, ZERO_SHOT_COT, IN_CONTEXT_ANSWER, IN_CONTEXT_COT)
"""Every format, in the order rows of one question are written."""
COT_FORMATS = frozenset({ZERO_SHOT_COT, IN_CONTEXT_COT})
"""Formats whose target is a chain (one row per chain); the others have one row per question."""
IN_CONTEXT_FORMATS = frozenset({IN_CONTEXT_ANSWER, IN_CONTEXT_COT})

EXEMPLAR_SEPARATOR = "\n\n"

# Math prompts stop generating at a blank line (`MATH_STOP`), so a chain must never contain one: a
# student taught to write blank lines mid-solution would be cut off there at evaluation time.
_BLANK_LINES = re.compile(r"\n\s*\n")


def answer_target(answer: str) -> str:
    """What follows `A:` in the answer-only formats, leading space included."""
    return f" The answer is {answer}"


def gold_chain(example: Example) -> str:
    """GSM8K's human-written solution as a chain: steps without calculator notes, then the answer line.

    Blank lines inside the solution (4 of GSM8K's 7473) are collapsed to one newline.
    """
    if not example.rationale:
        raise ValueError(f"{example.id} has no gold rationale")
    steps = _BLANK_LINES.sub("\n", example.rationale.strip())
    return f"{steps}\nThe answer is {example.answer}"


def zero_shot_answer_prompt(example: Example) -> str:
    return zero_shot_answer_only_prompt(example.question)


def zero_shot_chain_prompt(example: Example) -> str:
    return zero_shot_cot_prompt(example.question)


def in_context_answer_prompt(exemplars: Sequence[Example], example: Example) -> str:
    shots = [zero_shot_answer_only_prompt(e.question) + answer_target(e.answer) for e in exemplars]
    return EXEMPLAR_SEPARATOR.join([*shots, zero_shot_answer_only_prompt(example.question)])


def in_context_chain_prompt(exemplars: Sequence[Example], example: Example) -> str:
    shots = [zero_shot_cot_prompt(e.question) + gold_chain(e) for e in exemplars]
    return EXEMPLAR_SEPARATOR.join([*shots, zero_shot_cot_prompt(example.question)])


def render(fmt: str, example: Example, exemplars: Sequence[Example], chain: str | None) -> tuple[str, str]:
    """(prompt, target) of one row. `chain` is required for CoT formats, `exemplars` for in-context ones."""
    if fmt in COT_FORMATS and chain is None:
        raise ValueError(f"format {fmt} needs a chain")
    if fmt in IN_CONTEXT_FORMATS and not exemplars:
        raise ValueError(f"format {fmt} needs exemplars")
    if fmt == ZERO_SHOT_ANSWER:
        return zero_shot_answer_prompt(example), answer_target(example.answer)
    if fmt == ZERO_SHOT_COT:
        return zero_shot_chain_prompt(example), chain  # type: ignore[return-value]
    if fmt == IN_CONTEXT_ANSWER:
        return in_context_answer_prompt(exemplars, example), answer_target(example.answer)
    if fmt == IN_CONTEXT_COT:
        return in_context_chain_prompt(exemplars, example), chain  # type: ignore[return-value]
    raise ValueError(f"unknown format {fmt!r}")
