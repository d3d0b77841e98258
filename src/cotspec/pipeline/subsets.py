"""Which questions each evaluation of a run asks: seeded subsets, the OOD dev slice, and its exclusion from
the test set it came from.

A seeded subset of k questions of a task is ``random.Random(f"{seed}:{task}").sample(range(n), k)``,
kept in file order: the same seed, task and k always give the same questions (and a larger k is not a
superset of a smaller one). The OOD dev slice is such a subset of the OOD task's test split; the test
evaluation of that task leaves those questions out, so no number is measured on what selected the model.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Callable, Sequence

from ..tasks.base import Example, Task
from .config import PipelineConfig

Selector = Callable[[Task, list[Example]], list[Example]]


def seeded_subset(examples: Sequence[Example], size: int | None, seed: int, name: str) -> list[Example]:
    """`size` examples drawn with a seed derived from `seed` and `name`, in their original order."""
    if size is None or size >= len(examples):
        return list(examples)
    picked = sorted(random.Random(f"{seed}:{name}").sample(range(len(examples)), size))
    return [examples[i] for i in picked]


def dev_selector(config: PipelineConfig) -> Selector:
    select = config.select

    def choose(task: Task, examples: list[Example]) -> list[Example]:
        if task.name == select.in_distribution:
            return seeded_subset(examples, select.in_distribution_size, select.seed, task.name)
        if task.name == select.ood:
            return seeded_subset(examples, select.ood_size, select.seed, task.name)
        return examples

    return choose


def ood_slice_ids(config: PipelineConfig, data_dir: Path) -> dict[str, list[str]]:
    """{OOD task: ids of its dev slice} (empty without an OOD dev set)."""
    from ..tasks import get_task

    select = config.select
    if select.ood is None:
        return {}
    task = get_task(select.ood)
    examples = task.load(data_dir, task.default_split)
    return {task.name: [ex.id for ex in seeded_subset(examples, select.ood_size, select.seed, task.name)]}


def test_selector(config: PipelineConfig, excluded: dict[str, list[str]]) -> Selector:
    """The test questions: the task's test split minus the dev slice taken from it, then the seeded subset."""
    evaluation = config.eval
    left_out = {name: set(ids) for name, ids in excluded.items()}

    def choose(task: Task, examples: list[Example]) -> list[Example]:
        drop = left_out.get(task.name)
        if drop:
            examples = [ex for ex in examples if ex.id not in drop]
        return seeded_subset(examples, evaluation.limit_of(task.name), evaluation.seed, task.name)

    return choose
