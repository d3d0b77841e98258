"""Math word-problem benchmarks, each read from its original file: GSM8K, MultiArith, ASDiv-A, SVAMP.

Ids are `<task>/<split>/<index>` with the 0-based position of the record in its file (ASDiv: the
problem ID), so they stay stable across runs and match the paper's GSM8K dev indices.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from ..errors import CotspecError
from .base import Example, Task
from .datadir import check_split, field_error, get_field, read_json, read_jsonl, require_file
from .prompts import MATH_STOP, math_prompter
from .scoring import canonical_number, extract_math_answer, math_is_correct, math_vote_key, number_from_float

GSM8K_FILES = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
GSM8K_DEV_INDEX = "gsm8k_prompts/validation_index.npy"
MULTIARITH_FILE = "multiarith/MultiArith.json"
SVAMP_FILE = "svamp/SVAMP.json"
ASDIV_FILE = "asdiv/ASDiv.xml"
ASDIV_A_FOLDS = tuple(f"asdiv/nfolds/asdiv-a/fold{i}.txt" for i in range(5))

_CALCULATOR_NOTE = re.compile(r"<<[^>]*>>")
_FINAL_ANSWER = "\n#### "


def load_gsm8k(data_dir: Path, split: str = "test") -> list[Example]:
    """GSM8K: `answer` is the integer after `#### ` without commas; `rationale` the steps, calculator notes removed."""
    check_split("gsm8k", split, tuple(GSM8K_FILES))
    path = require_file(data_dir, GSM8K_FILES[split])
    examples = []
    for index, (line, record) in enumerate(read_jsonl(path)):
        where = f"{path}:{line}"
        question = get_field(record, "question", str, where)
        solution = get_field(record, "answer", str, where)
        steps, marker, final = solution.rpartition(_FINAL_ANSWER)
        gold = canonical_number(final.replace(",", "")) if marker else None
        if gold is None:
            raise field_error(where, "answer", "must end with a '#### <number>' line")
        examples.append(
            Example(f"gsm8k/{split}/{index}", question, gold, rationale=_CALCULATOR_NOTE.sub("", steps).strip())
        )
    return examples


def _dev_indices(data_dir: Path) -> np.ndarray:
    path = require_file(data_dir, GSM8K_DEV_INDEX)
    try:
        indices = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise CotspecError(f"{path}: not a NumPy .npy array of integers ({exc})") from exc
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise CotspecError(f"{path}: expected a 1-D integer array, got shape {indices.shape} dtype {indices.dtype}")
    return indices


def gsm8k_dev_ids(data_dir: Path) -> frozenset[str]:
    """Ids (`gsm8k/train/<line>`) of the paper's 200 dev questions, to keep them out of training data."""
    return frozenset(f"gsm8k/train/{int(i)}" for i in _dev_indices(Path(data_dir)))


def load_gsm8k_dev(data_dir: Path, split: str = "dev") -> list[Example]:
    """The paper's dev set: GSM8K training lines picked by `validation_index.npy`, in that file's order.

    The examples keep their `gsm8k/train/<line>` ids, so the sampler can exclude them from training.
    """
    check_split("gsm8k-dev", split, ("dev",))
    indices = _dev_indices(Path(data_dir))
    train = load_gsm8k(data_dir, "train")
    bad = [int(i) for i in indices if not 0 <= i < len(train)]
    if bad:
        raise CotspecError(f"{GSM8K_DEV_INDEX}: indices {bad[:5]} are outside gsm8k/train.jsonl ({len(train)} lines)")
    return [train[int(i)] for i in indices]


def load_multiarith(data_dir: Path, split: str = "test") -> list[Example]:
    """MultiArith: `sQuestion` without its padding spaces; gold `lSolutions[0]` (`39.0` -> `39`)."""
    check_split("multiarith", split, ("test",))
    path = require_file(data_dir, MULTIARITH_FILE)
    examples = []
    for index, record in _json_records(path):
        where = f"{path}[{index}]"
        solutions = get_field(record, "lSolutions", list, where)
        if not solutions or isinstance(solutions[0], bool) or not isinstance(solutions[0], (int, float)):
            raise field_error(where, "lSolutions", "must start with a number")
        question = get_field(record, "sQuestion", str, where).strip()
        gold = number_from_float(solutions[0])
        examples.append(Example(f"multiarith/test/{index}", question, gold, meta={"iIndex": record.get("iIndex")}))
    return examples


def svamp_question(body: str, question: str) -> str:
    """SVAMP's problem text, joined so it reads as prose.

    642 Bodies end with a full stop: `Body + " " + Question`. Of the 358 that stop mid-sentence, 346 end in
    an "If ..." clause, which the question completes: `"If there are 692 girls, how many ...?"`. The other
    12 end with a plain statement ("Then he got 10 new customers"), which gets its missing full stop.
    (The paper's code always writes `Body + ". " + Question`.)
    """
    body, question = body.strip(), question.strip()
    if body.endswith((".", "!", "?")):
        return f"{body} {question}"
    last_sentence = re.split(r"(?<=[.!?])\s+", body)[-1]
    if last_sentence.startswith("If "):
        return f"{body}, {question[:1].lower()}{question[1:]}"
    return f"{body}. {question}"


def load_svamp(data_dir: Path, split: str = "test") -> list[Example]:
    """SVAMP: all 1000 problems (the literature's test set); gold `Answer` float as canonical text."""
    check_split("svamp", split, ("test",))
    path = require_file(data_dir, SVAMP_FILE)
    examples = []
    for index, record in _json_records(path):
        where = f"{path}[{index}]"
        text = svamp_question(get_field(record, "Body", str, where), get_field(record, "Question", str, where))
        gold = number_from_float(get_field(record, "Answer", (int, float), where))
        meta = {"svamp_id": record.get("ID"), "type": record.get("Type"), "equation": record.get("Equation")}
        examples.append(Example(f"svamp/test/{index}", text, gold, meta=meta))
    return examples


# A single number (decimal, fraction or ASDiv's `-(1/3)`), optionally followed by its unit in brackets.
_ASDIV_ANSWER = re.compile(r"(?P<number>-?\d+(?:\.\d+)?(?:/\d+)?|-\(\d+/\d+\))\s*(?:\((?P<unit>[^()]*)\))?")


def asdiv_gold(answer: str) -> tuple[str, str | None] | None:
    """`"9 (apples)"` -> `("9", "apples")`, `"-(1/3)"` -> `("-1/3", None)`; None for non-numeric answers
    (`"Yes"`, `"3:30 p.m."`, several `;`-separated answers)."""
    match = _ASDIV_ANSWER.fullmatch(answer.strip())
    if match is None:
        return None
    number = canonical_number(match.group("number"))
    return None if number is None else (number, match.group("unit"))


def _asdiv_a_ids(data_dir: Path) -> set[str]:
    ids: set[str] = set()
    for relpath in ASDIV_A_FOLDS:
        text = require_file(data_dir, relpath).read_text(encoding="utf-8")
        ids.update(line.strip() for line in text.splitlines() if line.strip())
    return ids


def load_asdiv(data_dir: Path, split: str = "test") -> list[Example]:
    """ASDiv-A (the arithmetic subset: union of the asdiv-a folds), in ASDiv.xml order.

    Only problems whose answer is one number are kept; in ASDiv-A that is all 1218 (SOURCES.md's 1217
    counts `14  (seats)`, with two spaces, as non-numeric). Text is `Body + " " + Question`.
    """
    check_split("asdiv", split, ("test",))
    path = require_file(data_dir, ASDIV_FILE)
    wanted = _asdiv_a_ids(data_dir)
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line, column = exc.position
        raise CotspecError(f"{path}:{line}:{column}: not well-formed XML ({exc})") from exc
    examples, seen = [], set()
    for problem in root.iter("Problem"):
        problem_id = problem.get("ID")
        if problem_id not in wanted:
            continue
        seen.add(problem_id)
        where = f"{path}: Problem {problem_id}"
        body, question, answer = (_xml_text(problem, tag, where) for tag in ("Body", "Question", "Answer"))
        gold = asdiv_gold(answer)
        if gold is None:
            continue
        meta = {
            "grade": problem.get("Grade"),
            "solution_type": (problem.findtext("Solution-Type") or "").strip(),
            "unit": gold[1],
            "formula": (problem.findtext("Formula") or "").strip(),
        }
        examples.append(Example(f"asdiv/test/{problem_id}", f"{body.strip()} {question.strip()}", gold[0], meta=meta))
    missing = sorted(wanted - seen)
    if missing:
        raise CotspecError(
            f"{path}: {len(missing)} ASDiv-A ids from the fold files are not in the XML, e.g. {missing[0]}"
        )
    return examples


def _xml_text(problem: ET.Element, tag: str, where: str) -> str:
    text = problem.findtext(tag)
    if text is None or not text.strip():
        raise field_error(where, tag, "is missing or empty")
    return text


def _json_records(path: Path) -> Iterator[tuple[int, dict]]:
    """(index, object) for each element of a JSON array file, with errors naming `path[index]`."""
    data = read_json(path)
    if not isinstance(data, list):
        raise CotspecError(f"{path}: expected a JSON array of problems, got {type(data).__name__}")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise CotspecError(f"{path}[{index}]: expected a JSON object, got {type(record).__name__}")
        yield index, record


def math_task(
    name: str,
    description: str,
    load: Callable[[Path, str], list[Example]],
    splits: tuple[str, ...] = ("test",),
    default: str = "test",
) -> Task:
    """A math benchmark: math prompts, numeric extraction, exact rational scoring."""
    return Task(
        name=name,
        description=description,
        splits=splits,
        default_split=default,
        load=load,
        make_prompter=math_prompter,
        extract=extract_math_answer,
        is_correct=math_is_correct,
        vote_key=math_vote_key,
        stop=MATH_STOP,
    )


GSM8K = math_task("gsm8k", "GSM8K grade-school math (test 1319, train 7473)", load_gsm8k, ("train", "test"))
GSM8K_DEV = math_task("gsm8k-dev", "the paper's 200 GSM8K dev questions (from train)", load_gsm8k_dev, ("dev",), "dev")
MULTIARITH = math_task("multiarith", "MultiArith (600)", load_multiarith)
ASDIV = math_task("asdiv", "ASDiv-A arithmetic subset (1218)", load_asdiv)
SVAMP = math_task("svamp", "SVAMP (1000)", load_svamp)

TASKS = (GSM8K, GSM8K_DEV, MULTIARITH, ASDIV, SVAMP)
