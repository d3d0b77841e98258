"""BIG-Bench Hard: 27 tasks, each `bbh/bbh/<task>.json`, prompted with its own 3-shot CoT file.

The task names are the benchmark's, fixed at its release (a test checks them against the data files), so
the registry knows them without reading the data folder.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..errors import CotspecError
from .base import Example, Task
from .datadir import check_split, get_field, read_json, require_file
from .prompts import BBH_STOP, bbh_prompter
from .scoring import bbh_is_correct, bbh_vote_key, extract_bbh_answer

GROUP = "bbh"
BBH_TASK_NAMES = (
    "boolean_expressions",
    "causal_judgement",
    "date_understanding",
    "disambiguation_qa",
    "dyck_languages",
    "formal_fallacies",
    "geometric_shapes",
    "hyperbaton",
    "logical_deduction_five_objects",
    "logical_deduction_seven_objects",
    "logical_deduction_three_objects",
    "movie_recommendation",
    "multistep_arithmetic_two",
    "navigate",
    "object_counting",
    "penguins_in_a_table",
    "reasoning_about_colored_objects",
    "ruin_names",
    "salient_translation_error_detection",
    "snarks",
    "sports_understanding",
    "temporal_sequences",
    "tracking_shuffled_objects_five_objects",
    "tracking_shuffled_objects_seven_objects",
    "tracking_shuffled_objects_three_objects",
    "web_of_lies",
    "word_sorting",
)


def bbh_data_path(task: str) -> str:
    return f"bbh/bbh/{task}.json"


def load_bbh(task: str, data_dir: Path, split: str = "test") -> list[Example]:
    """All examples of one BBH task (`input` -> question, `target` -> answer), in file order."""
    name = f"{GROUP}:{task}"
    check_split(name, split, ("test",))
    path = require_file(data_dir, bbh_data_path(task))
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise CotspecError(f"{path}: expected a JSON object with an 'examples' list")
    examples = []
    for index, record in enumerate(data["examples"]):
        where = f"{path}: examples[{index}]"
        if not isinstance(record, dict):
            raise CotspecError(f"{where}: expected a JSON object")
        question = get_field(record, "input", str, where)
        target = get_field(record, "target", str, where)
        examples.append(Example(f"{name}/test/{index}", question, target))
    return examples


def bbh_task(task: str) -> Task:
    return Task(
        name=f"{GROUP}:{task}",
        description=f"BIG-Bench Hard {task.replace('_', ' ')}",
        splits=("test",),
        default_split="test",
        load=partial(load_bbh, task),
        make_prompter=partial(bbh_prompter, task),
        extract=extract_bbh_answer,
        is_correct=bbh_is_correct,
        vote_key=bbh_vote_key,
        stop=BBH_STOP,
        group=GROUP,
    )


TASKS = tuple(bbh_task(task) for task in BBH_TASK_NAMES)
