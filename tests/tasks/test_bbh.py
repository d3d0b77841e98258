"""BIG-Bench Hard loaders on the 27 original files, and scoring against every real target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cotspec.errors import CotspecError
from cotspec.tasks.bbh import BBH_TASK_NAMES, load_bbh
from cotspec.tasks.scoring import bbh_is_correct, extract_bbh_answer


@pytest.fixture(scope="module")
def all_examples(data_dir: Path):
    return {task: load_bbh(task, data_dir) for task in BBH_TASK_NAMES}


def test_task_names_match_the_files(data_dir: Path) -> None:
    assert list(BBH_TASK_NAMES) == sorted(p.stem for p in (data_dir / "bbh" / "bbh").glob("*.json"))
    assert list(BBH_TASK_NAMES) == sorted(p.stem for p in (data_dir / "bbh" / "cot-prompts").glob("*.txt"))


def test_counts(all_examples) -> None:
    counts = {task: len(examples) for task, examples in all_examples.items()}
    assert len(counts) == 27 and sum(counts.values()) == 6511
    assert (counts["date_understanding"], counts["causal_judgement"], counts["penguins_in_a_table"], counts["snarks"]) == (
        250, 187, 146, 178,
    )
    assert {n for t, n in counts.items() if t not in ("causal_judgement", "penguins_in_a_table", "snarks")} == {250}


def test_ids_and_fields_follow_the_file(data_dir: Path, all_examples) -> None:
    raw = json.loads((data_dir / "bbh" / "bbh" / "dyck_languages.json").read_text(encoding="utf-8"))["examples"]
    examples = all_examples["dyck_languages"]
    assert [e.id for e in examples[:2]] == ["bbh:dyck_languages/test/0", "bbh:dyck_languages/test/1"]
    assert [(e.question, e.answer) for e in examples] == [(r["input"], r["target"]) for r in raw]
    assert examples[0].answer == "] ]"


def test_every_target_scores_when_stated_as_the_prompts_do(all_examples) -> None:
    for task, examples in all_examples.items():
        for example in examples:
            output = f"Let's see. ... So the answer is {example.answer}."
            assert bbh_is_correct(extract_bbh_answer(output), example.answer), (task, example.id)


def test_wrong_option_letter_is_wrong(all_examples) -> None:
    for example in all_examples["logical_deduction_three_objects"]:
        wrong = "(A)" if example.answer != "(A)" else "(B)"
        assert not bbh_is_correct(extract_bbh_answer(f"So the answer is {wrong}."), example.answer)
        assert bbh_is_correct(example.answer.strip("()"), example.answer)  # bare letter counts


def test_missing_examples_field_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bbh" / "bbh" / "snarks.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"canary": "x", "examples": [{"input": "q", "target": "(A)"}, {"input": "q"}]}))
    with pytest.raises(CotspecError, match=rf"{path}: examples\[1\]: field 'target' is missing"):
        load_bbh("snarks", tmp_path)
