"""The dev-leak check reads the rows themselves and raises on any trace of a gsm8k-dev question."""

from __future__ import annotations

import pytest
from datasets import Dataset

from cotspec.formats import FEATURES, DevLeakError, assert_no_dev_questions

DEV = {"gsm8k/train/9": "How many ducks are there?"}


def _dataset(**changes) -> Dataset:
    row = {
        "id": "in_context_answer:gsm8k/train/0", "question_id": "gsm8k/train/0", "format": "in_context_answer",
        "source": "gold_answer", "prompt": "Q: Other question?\nA: The answer is 3\n\nQ: Our question?\nA:",
        "target": " The answer is 72", "exemplar_ids": ["gsm8k/train/5"], "has_logprobs": False,
        "teacher_tokens": [], "teacher_top_tokens": [], "teacher_top_logprobs": [],
    }  # fmt: skip
    clean = dict(row, id="zero_shot_answer:gsm8k/train/1", question_id="gsm8k/train/1", exemplar_ids=[])
    return Dataset.from_list([clean, {**row, **changes}], features=FEATURES)


def test_clean_rows_pass():
    assert assert_no_dev_questions(_dataset(), DEV) == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"question_id": "gsm8k/train/9"}, "trains on gsm8k-dev question gsm8k/train/9"),
        ({"exemplar_ids": ["gsm8k/train/5", "gsm8k/train/9"]}, "as an in-context exemplar"),
        # Ids clean, but the dev question's text made it into the prompt anyway.
        ({"prompt": "Q: How many ducks are there?\nA: The answer is 3\n\nQ: Our question?\nA:"}, "text in its prompt"),
    ],
)
def test_any_trace_of_a_dev_question_raises(changes, message):
    with pytest.raises(DevLeakError, match=message):
        assert_no_dev_questions(_dataset(**changes), DEV)
