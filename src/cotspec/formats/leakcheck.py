"""The guarantee that gsm8k-dev never reaches training data, checked on the built rows themselves.

The builder filters dev questions out before rendering; this check does not trust that filter. It reads
the finished dataset and raises if a dev question appears as a row's question, as an in-context
exemplar id, or as the text of any `Q: ...` line of any prompt (which catches a leak however the prompt
was assembled, as long as dev question texts are one line, as all GSM8K questions are).
"""

from __future__ import annotations

from typing import Mapping

from datasets import Dataset


class DevLeakError(AssertionError):
    """A gsm8k-dev question is in the training data: a bug in the builder, never a user error."""


_CHECK_BATCH_ROWS = 2048


def assert_no_dev_questions(dataset: Dataset, dev_questions: Mapping[str, str]) -> int:
    """Raise DevLeakError if any row touches a dev question; returns the number of rows checked.

    `dev_questions` maps each dev question id to its text.
    """
    dev_ids = set(dev_questions)
    dev_lines = {f"Q: {text}" for text in dev_questions.values()}
    checked = 0
    columns = dataset.select_columns(["id", "question_id", "exemplar_ids", "prompt"])
    for batch in columns.iter(batch_size=_CHECK_BATCH_ROWS):
        for row_id, question_id, exemplar_ids, prompt in zip(batch["id"], batch["question_id"], batch["exemplar_ids"], batch["prompt"]):
            if question_id in dev_ids:
                raise DevLeakError(f"row {row_id} trains on gsm8k-dev question {question_id}")
            leaked = dev_ids.intersection(exemplar_ids)
            if leaked:
                raise DevLeakError(f"row {row_id} uses gsm8k-dev question {sorted(leaked)[0]} as an in-context exemplar")
            if not dev_lines.isdisjoint(prompt.split("\n")):
                raise DevLeakError(f"row {row_id} has a gsm8k-dev question's text in its prompt")
        checked += len(batch["id"])
    return checked
