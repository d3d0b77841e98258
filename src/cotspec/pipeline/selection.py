"""Checkpoint selection: dev accuracies per checkpoint, what each criterion picks, selection.json.

A checkpoint's dev accuracy on a task is the mean over the configured dev modes. The criteria:
``in_distribution`` (the in-distribution dev task), ``ood`` (the OOD dev slice), ``mean`` (their mean).
Each picks the step with the highest value; ties go to the earlier step (less specialization cost).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import CotspecError
from . import evals
from .config import PipelineConfig

CRITERIA = ("in_distribution", "ood", "mean")


def dev_accuracies(config: PipelineConfig, run_dir: Path, model: str) -> dict[str, float]:
    """Task -> dev accuracy (mean over modes) of one evaluated model."""
    summaries = evals.read_summary(config, run_dir, model, "dev")
    out: dict[str, float] = {}
    for task in config.select.dev_tasks:
        values = [s["tasks"][task]["accuracy"] for s in summaries.values() if task in s["tasks"]]
        if values:
            out[task] = round(sum(values) / len(values), 6)
    return out


def criterion_value(config: PipelineConfig, criterion: str, accuracies: dict[str, float]) -> float | None:
    select = config.select
    in_dist = accuracies.get(select.in_distribution)
    ood = accuracies.get(select.ood) if select.ood else None
    if criterion == "in_distribution":
        return in_dist
    if criterion == "ood":
        return ood
    return None if in_dist is None or ood is None else (in_dist + ood) / 2


def select(config: PipelineConfig, run_dir: Path, excluded: dict[str, list[str]]) -> dict[str, Any]:
    """The selection record (selection.json) from the dev evaluations on disk."""
    steps = list(evals.checkpoints(run_dir / "train"))
    if not steps:
        raise CotspecError(f"{run_dir / 'train'}: no checkpoints to select from; re-run the train stage")
    dev: dict[str, dict[str, float]] = {}
    if evals.complete(config, run_dir, evals.BASE, "dev"):
        dev[evals.BASE] = dev_accuracies(config, run_dir, evals.BASE)
    per_step = {step: dev_accuracies(config, run_dir, evals.step_name(step)) for step in steps}
    for step, accuracies in per_step.items():
        dev[evals.step_name(step)] = accuracies
    picked: dict[str, int | None] = {}
    for criterion in CRITERIA:
        scored = [(value, step) for step in steps if (value := criterion_value(config, criterion, per_step[step])) is not None]
        # max value, then the earliest step among equals
        picked[criterion] = max(scored, key=lambda item: (item[0], -item[1]))[1] if scored else None
    chosen = picked[config.select.criterion]
    if chosen is None:
        raise CotspecError(f"select.criterion: no dev accuracy for {config.select.criterion}; re-run eval_checkpoints")
    selected = [chosen]
    if config.select.test_all_picks:
        selected += sorted({s for s in picked.values() if s is not None and s != chosen})
    return {
        "criterion": config.select.criterion,
        "picked": picked,
        "selected": selected,
        "dev": dev,
        "dev_tasks": {"in_distribution": config.select.in_distribution, "ood": config.select.ood},
        "dev_modes": [m.value for m in config.select.modes],
        "ood_slice": None if config.select.ood is None else {
            "task": config.select.ood, "size": config.select.ood_size, "seed": config.select.seed,
            "rule": "random.Random('<seed>:<task>').sample of the test split's indices, in file order",
        },
        "excluded_from_test": excluded,
    }
