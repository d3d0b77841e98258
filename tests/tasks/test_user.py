"""`jsonl:<path>` tasks: a user's own file, scored as math or by exact match depending on the gold."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cotspec.errors import CotspecError
from cotspec.tasks import get_task
from cotspec.tasks.base import PromptSpec
from cotspec.tasks.user import task_file


def _write(path: Path, *lines: object) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines), encoding="utf-8")
    return path


def test_load_and_score(tmp_path: Path, data_dir: Path) -> None:
    path = _write(
        tmp_path / "mine.jsonl",
        {"question": "A pen costs $2. How much do 1,000 pens cost?", "answer": 2000},
        "",
        {"question": "Half of 5?", "answer": 2.5},
        {"question": "Is a tomato a fruit?", "answer": " Yes "},
        {"question": "Which option?", "answer": "(B)"},
    )
    task = get_task(f"jsonl:{path}")
    examples = task.load(data_dir, "test")
    assert [e.id for e in examples] == [f"jsonl:{path}/test/{i}" for i in range(4)]
    assert [e.answer for e in examples] == ["2000", "2.5", "Yes", "(B)"]

    def score(output: str, gold: str) -> bool:
        return task.is_correct(task.extract(output), gold)

    assert score("1000 * 2 = 2000.\nThe answer is $2,000.", "2000")
    assert score("So 2000 dollars", "2000")  # no trigger: the last number
    assert not score("The answer is 2001.", "2000")
    assert score("5 / 2 = 2.5\nThe answer is 5/2.", "2.5")
    assert score("Botanically it is. The answer is yes.", "Yes")
    assert score("So the answer is B.", "(B)")
    assert not score("The answer is no.", "Yes")

    prompt = task.make_prompter(data_dir, PromptSpec())(examples[0])
    assert prompt.endswith("\nQuestion: A pen costs $2. How much do 1,000 pens cost?\nLet's think step by step\n")


def test_bad_lines_name_line_and_field(tmp_path: Path, data_dir: Path) -> None:
    cases = {
        "malformed": ('{"question": "q", "answer": 1}', '{"question": "q" "answer": 1}', "not valid JSON"),
        "no_answer": ('{"question": "q", "answer": 1}', '{"question": "q"}', "field 'answer' is missing"),
        "bool_answer": ('{"question": "q", "answer": 1}', '{"question": "q", "answer": true}',
                        "field 'answer' must be a string or a number, got true/false"),
        "list_question": ('{"question": "q", "answer": 1}', '{"question": ["q"], "answer": 1}',
                          "field 'question' must be a string, got a list"),
        "empty_answer": ('{"question": "q", "answer": 1}', '{"question": "q", "answer": "  "}', "field 'answer' is empty"),
        "nan_answer": ('{"question": "q", "answer": 1}', '{"question": "q", "answer": NaN}',
                       "field 'answer' must be a finite number, got NaN"),
        "infinite_answer": ('{"question": "q", "answer": 1}', '{"question": "q", "answer": Infinity}',
                            "field 'answer' must be a finite number, got Infinity"),
    }
    for name, (good, bad, expected) in cases.items():
        path = _write(tmp_path / f"{name}.jsonl", good, bad)
        with pytest.raises(CotspecError) as err:
            get_task(f"jsonl:{path}").load(data_dir, "test")
        assert str(err.value).startswith(f"{path}:2: ") and expected in str(err.value), name


def test_missing_file(tmp_path: Path, data_dir: Path) -> None:
    with pytest.raises(CotspecError, match=r"task file .*nope\.jsonl does not exist \(task jsonl:"):
        get_task(f"jsonl:{tmp_path}/nope.jsonl").load(data_dir, "test")
    with pytest.raises(CotspecError, match="names no file"):
        get_task("jsonl:")


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_a_file_without_questions_is_refused(tmp_path: Path, data_dir: Path, content: str) -> None:
    # Scoring no question at all used to report 0.0%, as if the model had failed every one.
    path = tmp_path / "empty.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CotspecError, match=rf"task file {re.escape(str(path))} holds no questions"):
        get_task(f"jsonl:{path}").load(data_dir, "test")


def test_a_file_that_is_not_utf8_names_line_and_field(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "latin1.jsonl"
    path.write_bytes('{"question": "q", "answer": 1}\n{"question": "café?", "answer": 2}\n'.encode("latin-1"))
    with pytest.raises(CotspecError, match=rf"^{re.escape(str(path))}:2: field 'question' is not UTF-8 text"):
        get_task(f"jsonl:{path}").load(data_dir, "test")


def test_task_file_is_the_absolute_file(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert task_file("jsonl:q.jsonl") == task_file("jsonl:./sub/../q.jsonl") == tmp_path / "q.jsonl"
