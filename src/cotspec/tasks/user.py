"""`jsonl:<path>`: a user's own questions, one JSON object per line with `question` and `answer`.

    {"question": "A pen costs $2. How much do 3 pens cost?", "answer": 6}
    {"question": "Is the sentence plausible? ...", "answer": "yes"}

A gold that parses as a number is scored as math (exact rational match of the number the model commits
to); any other gold is scored BIG-Bench-Hard style (exact match after normalization). Prompts are the math
ones ("Question: ... The answer is N"), so the `exemplars` setting can point at the user's own exemplar file.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..errors import CotspecError
from .base import Example, Task
from .datadir import check_split, get_field, read_jsonl
from .prompts import MATH_STOP, math_prompter
from .scoring import (
    bbh_is_correct,
    bbh_vote_key,
    extract_bbh_answer,
    extract_math_answer,
    math_is_correct,
    math_vote_key,
    number_from_float,
    parse_rational,
)

PREFIX = "jsonl:"


def load_jsonl(name: str, path: Path, data_dir: Path, split: str = "test") -> list[Example]:
    """Every line of the user's file; ids are `jsonl:<path>/test/<0-based record index>`."""
    del data_dir  # the file is named by its own path, not found in the data dir
    check_split(name, split, ("test",))
    if not path.is_file():
        raise CotspecError(f"task file {path} does not exist (task {name}); give the path of a .jsonl file")
    examples = []
    for index, (line, record) in enumerate(read_jsonl(path)):
        where = f"{path}:{line}"
        question = get_field(record, "question", str, where)
        answer = get_field(record, "answer", (str, int, float), where)
        gold = answer.strip() if isinstance(answer, str) else number_from_float(answer)
        if not question.strip() or not gold:
            raise CotspecError(f"{where}: field {'question' if not question.strip() else 'answer'!r} is empty")
        examples.append(Example(f"{name}/test/{index}", question, gold))
    if not examples:
        # Scoring nothing would report 0.0% as if the model had failed every question.
        raise CotspecError(
            f"task file {path} holds no questions (task {name}); "
            'write one JSON object per line, e.g. {"question": "What is 2 + 3?", "answer": 5}'
        )
    return examples


def extract_any(text: str) -> str | None:
    """The text after the last "the answer is" (cleaned), else the last number in `text`."""
    return extract_bbh_answer(text) or extract_math_answer(text)


def any_is_correct(extracted: str | None, gold: str) -> bool:
    """Math scoring when the gold is a number, exact-match scoring otherwise."""
    if parse_rational(gold) is not None:
        return extracted is not None and math_is_correct(extract_math_answer(extracted), gold)
    return bbh_is_correct(extracted, gold)


def any_vote_key(answer: str) -> str:
    """Numbers vote by value, other answers as exact-match scoring compares them."""
    return math_vote_key(answer) if parse_rational(answer) is not None else bbh_vote_key(answer)


def task_file(name: str) -> Path:
    """The absolute file behind `jsonl:<path>`: what identifies the task, however the path is spelled."""
    return Path(name.removeprefix(PREFIX)).expanduser().resolve()


def jsonl_task(name: str) -> Task:
    """The task for `jsonl:<path>` (the path as the user wrote it, relative to the working directory)."""
    path_text = name.removeprefix(PREFIX)
    if not path_text:
        raise CotspecError(f"task {name!r} names no file: write jsonl:<path to a .jsonl file>")
    return Task(
        name=name,
        description=f"questions from {path_text}",
        splits=("test",),
        default_split="test",
        load=partial(load_jsonl, name, Path(path_text).expanduser()),
        make_prompter=math_prompter,
        extract=extract_any,
        is_correct=any_is_correct,
        vote_key=any_vote_key,
        stop=MATH_STOP,
    )
