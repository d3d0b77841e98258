"""Prompt builders: the exact strings the paper's code sends, for math and BIG-Bench Hard.

Math (GSM8K-style exemplar files, blocks separated by a blank line)::

    Question: <question>
    Let's think step by step
    <one reasoning step per line>
    The answer is <number>.

few-shot CoT      exemplars + "\\nQuestion: " + q + "\\nLet's think step by step\\n"
few-shot answer   the same blocks without their reasoning lines + "\\nQuestion: " + q + "\\n"
zero-shot CoT     "Q: " + q + "\\nLet's think step by step\\n"
zero-shot answer  "Q: " + q + "\\nA:"

The zero-shot templates are also the training formats of the distillation stage, so they are plain
module-level functions other packages import. BIG-Bench Hard uses the benchmark's own 3-shot CoT files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

from ..errors import ConfigError, CotspecError
from .base import Mode, Prompter, PromptSpec
from .datadir import require_file

COT_TRIGGER = "Let's think step by step"
MATH_STOP = ("\n\n", "\nQuestion:", "\nQ:")
"""A math answer ends at a blank line or where the model starts the next question."""
BBH_STOP = ("\n\nQ:", "\nQ:")

MATH_EXEMPLAR_SETS = {
    "original": "gsm8k_prompts/prompt_original.txt",
    "complex": "gsm8k_prompts/prompt_complex.txt",
}
"""Named math exemplar sets: Wei et al.'s 8 shots, and the 8 longest-reasoning GSM8K training questions."""
DEFAULT_MATH_EXEMPLARS = "original"
DEFAULT_MATH_SHOTS = 4
"""The paper evaluates with the first 4 of Wei et al.'s exemplars."""

_ANSWER_LINE = re.compile(r"the answer is", re.IGNORECASE)


# --- templates (shared with the distillation stage) -------------------------------------------------


def few_shot_cot_prompt(exemplars_text: str, question: str) -> str:
    """`exemplars_text` (blocks joined by a blank line, ending with a newline) + the question to reason on."""
    return f"{exemplars_text}\nQuestion: {question}\n{COT_TRIGGER}\n"


def few_shot_answer_only_prompt(exemplars_text: str, question: str) -> str:
    """Like `few_shot_cot_prompt` but the model is to answer at once ("The answer is N")."""
    return f"{exemplars_text}\nQuestion: {question}\n"


def zero_shot_cot_prompt(question: str) -> str:
    return f"Q: {question}\n{COT_TRIGGER}\n"


def zero_shot_answer_only_prompt(question: str) -> str:
    return f"Q: {question}\nA:"


# --- math exemplars -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class MathExemplar:
    """One block of a math exemplar file."""

    text: str
    """The block exactly as in the file, without the blank line that separates it from the next."""
    question_lines: str
    """The `Question: ...` line(s), up to the `Let's think step by step` line."""
    answer_line: str
    """The last line that starts with "The answer is", verbatim (`The answer is 6.`)."""

    @property
    def answer_only(self) -> str:
        return f"{self.question_lines}\n{self.answer_line}"


def parse_math_exemplars(text: str, source: str | Path) -> list[MathExemplar]:
    """Split an exemplar file into blocks; CotspecError naming `source:line` of a malformed block."""
    exemplars = []
    for index, (line_number, lines) in enumerate(_blocks(text.replace("\r\n", "\n")), start=1):
        where = f"{source}:{line_number}: exemplar {index}"
        if not lines[0].startswith("Question:"):
            raise CotspecError(f"{where} does not start with 'Question:' (expected the layout of prompt_original.txt)")
        answers = [i for i, line in enumerate(lines) if _ANSWER_LINE.match(line.strip())]
        if not answers:
            raise CotspecError(f"{where} has no 'The answer is ...' line")
        is_trigger = [line.strip().rstrip(".:").casefold() == COT_TRIGGER.casefold() for line in lines]
        question_end = is_trigger.index(True) if any(is_trigger) else 1
        exemplars.append(MathExemplar("\n".join(lines), "\n".join(lines[:question_end]), lines[answers[-1]].strip()))
    if not exemplars:
        raise CotspecError(f"{source}: no exemplars found (expected blocks separated by a blank line)")
    return exemplars


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Runs of non-blank lines, each with the 1-based line number it starts on."""
    blocks: list[tuple[int, list[str]]] = []
    current: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.strip():
            if not current:
                blocks.append((number, current))
            current.append(line)
        else:
            current = []
    return blocks


def load_math_exemplars(data_dir: Path, name_or_path: str) -> list[MathExemplar]:
    """A named set (`original`, `complex`) from the data dir, or a user file in the same layout."""
    if name_or_path in MATH_EXEMPLAR_SETS:
        path = require_file(data_dir, MATH_EXEMPLAR_SETS[name_or_path])
    else:
        path = Path(name_or_path).expanduser()
        if not path.is_file():
            known = ", ".join(MATH_EXEMPLAR_SETS)
            raise CotspecError(f"exemplar set {name_or_path!r} is neither a known name ({known}) nor an existing file")
    return parse_math_exemplars(path.read_text(encoding="utf-8"), path)


def exemplars_text(blocks: list[str]) -> str:
    """Blocks joined as in the files: a blank line between blocks, a newline at the end."""
    return "\n\n".join(blocks) + "\n"


def math_prompter(data_dir: Path, spec: PromptSpec) -> Prompter:
    """The prompt builder for a math task; exemplar files are read once, here."""
    if spec.mode is Mode.ZERO_SHOT:
        _reject_exemplar_options(spec, "math")
        template = zero_shot_cot_prompt if spec.cot else zero_shot_answer_only_prompt
        return lambda example: template(example.question)
    name = spec.exemplars or DEFAULT_MATH_EXEMPLARS
    exemplars = load_math_exemplars(Path(data_dir), name)
    kept = _keep(exemplars, spec.shots, DEFAULT_MATH_SHOTS, name)
    if spec.cot:
        text = exemplars_text([e.text for e in kept])
        return lambda example: few_shot_cot_prompt(text, example.question)
    text = exemplars_text([e.answer_only for e in kept])
    return lambda example: few_shot_answer_only_prompt(text, example.question)


_T = TypeVar("_T")


def _keep(exemplars: Sequence[_T], shots: int | None, default: int, name: str) -> Sequence[_T]:
    shots = min(default, len(exemplars)) if shots is None else shots
    if shots < 1:
        raise ConfigError("shots", f"must be >= 1 for few-shot prompts, got {shots} (zero-shot prompts have none)")
    if shots > len(exemplars):
        raise ConfigError("shots", f"{shots} asks for more exemplars than {name} has ({len(exemplars)})")
    return exemplars[:shots]


def _reject_exemplar_options(spec: PromptSpec, what: str) -> None:
    if spec.exemplars is not None or spec.shots is not None:
        field = "exemplars" if spec.exemplars is not None else "shots"
        raise ConfigError(field, f"applies to few-shot prompts only; {what} zero-shot prompts have no exemplars")


# --- BIG-Bench Hard -----------------------------------------------------------------------------------


def bbh_prompt_path(task: str) -> str:
    return f"bbh/cot-prompts/{task}.txt"


@dataclass(frozen=True)
class BBHPrompt:
    """A BBH CoT prompt file after the canary: task description, then `Q: ...\\nA: ...` exemplars."""

    description: str
    exemplars: tuple[str, ...]
    """Each `Q: <input>\\nA: Let's think step by step. ... So the answer is X.`, verbatim."""
    answer_only: tuple[str, ...]
    """The same exemplars as `Q: <input>\\nA: So the answer is X.`"""

    def text(self, shots: int, answer_only: bool = False) -> str:
        blocks = (self.answer_only if answer_only else self.exemplars)[:shots]
        return "\n\n".join(part for part in (self.description, *blocks) if part)


_CANARY_RULE = "-" * 5
"""The line that ends a BBH prompt file's canary header."""


def parse_bbh_prompt(text: str, source: str | Path) -> BBHPrompt:
    """Drop the canary (up to and including the `-----` line), then split description and exemplars."""
    lines = text.replace("\r\n", "\n").split("\n")
    if _CANARY_RULE in lines:
        lines = lines[lines.index(_CANARY_RULE) + 1 :]
    body = "\n".join(lines).strip("\n")
    head, *rest = ("\n\n" + body).split("\n\nQ: ")
    exemplars, answer_only = [], []
    for index, part in enumerate(rest, start=1):
        block = "Q: " + part
        question, sep, answer = block.partition("\nA:")
        triggers = list(_ANSWER_LINE.finditer(answer))
        if not sep or not triggers:
            raise CotspecError(f"{source}: exemplar {index} has no 'A: ... So the answer is X.' answer")
        final = answer[triggers[-1].end() :].strip().removesuffix(".")
        exemplars.append(block)
        answer_only.append(f"{question}\nA: So the answer is {final}.")
    if not exemplars:
        raise CotspecError(f"{source}: no 'Q: ...' exemplars found after the description")
    return BBHPrompt(head.strip("\n"), tuple(exemplars), tuple(answer_only))


def bbh_query(prompt_text: str, question: str, *, cot: bool = True) -> str:
    """`prompt + "\\n\\nQ: " + input + "\\nA: Let's think step by step."` (answer-only: ends at `A:`)."""
    tail = f"Q: {question}\nA: {COT_TRIGGER}." if cot else f"Q: {question}\nA:"
    return f"{prompt_text}\n\n{tail}" if prompt_text else tail


def bbh_prompter(task: str, data_dir: Path, spec: PromptSpec) -> Prompter:
    """Prompt builder for `bbh:<task>` from the benchmark's own CoT prompt file.

    Few-shot: the file after its canary (description and 3 exemplars) + the query; answer-only keeps each
    exemplar's input and final sentence. Zero-shot: the description alone + the query; the description is
    everything before the first exemplar, one line except in snarks.txt, which adds a paragraph defining
    sarcasm that the task needs.
    """
    name = f"bbh:{task}"
    if spec.exemplars is not None:
        raise ConfigError(
            "exemplars", f"applies to math tasks; {name} uses its own prompts from {bbh_prompt_path(task)}"
        )
    path = require_file(Path(data_dir), bbh_prompt_path(task))
    prompt = parse_bbh_prompt(path.read_text(encoding="utf-8"), path)
    if spec.mode is Mode.ZERO_SHOT:
        _reject_exemplar_options(spec, name)
        if not spec.cot:
            raise CotspecError(
                f"zero-shot answer-only prompts are not supported for {name}: its answers follow the exemplars' "
                "'So the answer is X.' format; use few-shot mode or chain of thought"
            )
        return lambda example: bbh_query(prompt.description, example.question)
    shots = len(_keep(prompt.exemplars, spec.shots, len(prompt.exemplars), name))
    text = prompt.text(shots, answer_only=not spec.cot)
    return lambda example: bbh_query(text, example.question, cot=spec.cot)
