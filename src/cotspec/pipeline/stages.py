"""The stages of a run, in order, each with its settings, its outputs and what it runs.

    eval_base -> sample -> build -> train -> eval_checkpoints -> select -> eval_selected -> report -> publish

A stage's settings are dotted config keys in two kinds: `strict` ones change finished work (a changed
one is refused once the stage has run, unless forced), `loose` ones only extend it (more chains, more
steps, more questions: the stage runs again and resumes). A stage's inputs are its own settings plus its
upstream stages'; train is `invalidated_by_upstream`: anything that changes its data changes what a
finished training run would have been, so all of its upstream settings count as strict.
"""

from __future__ import annotations

import ctypes
import gc
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from .. import config as config_system
from ..distill.config import RESUMABLE_CHANGES
from .config import PipelineConfig
from .state import SELECTION_FILE, read_json, write_json

EVAL_STRICT = ("eval.exemplars", "eval.shots", "eval.max_new_tokens", "eval.dtype", "eval.seed")
DEV_LOOSE = ("select.in_distribution", "select.in_distribution_size", "select.ood", "select.ood_size",
             "select.seed", "select.modes")
TEST_LOOSE = ("eval.tasks", "eval.limit", "eval.bbh_limit", "eval.limits", "eval.modes", "select.ood", "select.ood_size", "select.seed")
SAMPLE_STRICT = tuple(f"teacher.{k}" for k in (
    "model", "tasks", "split", "temperature", "top_p", "top_logprobs", "exemplars", "shots", "prompt_file",
    "answer_marker", "include_dev", "max_new_tokens", "seed"))
SAMPLE_LOOSE = ("teacher.n", "teacher.limit")
BUILD_LOOSE = tuple(f"data.{k}" for k in ("store", "gold", "formats", "weights", "shots", "seed", "limit", "max_per_question"))
TRAIN_LOOSE = ("train.epochs", "train.max_steps", "train.save_every")


@dataclass
class Run:
    """What the stages work with: the config, the run directory, the data directory, this run's state."""

    config: PipelineConfig
    dir: Path
    data_dir: Path
    flat: dict[str, Any]

    @property
    def store(self) -> Path:
        """The teacher's sample store: `teacher.store` when set (shared between runs), else the run's own."""
        teacher = self.config.teacher
        if teacher is not None and teacher.store is not None:
            return Path(teacher.store)
        return self.dir / "teacher" / "samples.db"


@dataclass(frozen=True)
class Stage:
    name: str
    deps: tuple[str, ...]
    strict: tuple[str, ...]
    loose: tuple[str, ...]
    outputs: Callable[[Run], list[Path]]
    """What a forced redo deletes."""
    complete: Callable[[Run], bool]
    execute: Callable[[Run], str]
    """Runs the stage (resuming), returns its summary line."""
    invalidated_by_upstream: bool = False
    applies: Callable[[PipelineConfig], bool] = lambda config: True


# --- eval_base -------------------------------------------------------------------------------------


def _excluded(run: Run) -> dict[str, list[str]]:
    from .subsets import ood_slice_ids

    return ood_slice_ids(run.config, run.data_dir)


def _suites_of_base(config: PipelineConfig) -> tuple[str, ...]:
    return ("dev", "test")


def _eval_base(run: Run) -> str:
    from . import evals

    parts = []
    excluded = _excluded(run)
    for suite in _suites_of_base(run.config):
        results = evals.evaluate(run.config, run.dir, run.data_dir, evals.BASE, run.config.student.model, suite, excluded)
        parts.append(evals.describe(results, suite))
    return "; ".join(parts)


def _eval_base_complete(run: Run) -> bool:
    from . import evals

    return all(evals.complete(run.config, run.dir, evals.BASE, suite) for suite in _suites_of_base(run.config))


# --- sample, build, train ----------------------------------------------------------------------------


def _sample(run: Run) -> str:
    from .teacher import sample

    report = sample(run.config.teacher, run.store, run.data_dir)
    return (f"{report.questions} questions x {run.config.teacher.n} chains: {report.written} new "
            f"({report.written_correct} correct), {report.already_stored} already stored")


def _build(run: Run) -> str:
    from ..formats import BuildConfig, build_training_data

    config = run.config
    settings = config.data.build_settings()
    settings.update(store=run.store if config.teacher is not None else config.data.store, data_dir=run.data_dir)
    build_training_data(BuildConfig(out=run.dir / "data", **settings))
    manifest = read_json(run.dir / "data" / "build.json") or {}
    formats = manifest.get("formats") or {}
    per_format = ", ".join(f"{name} {info.get('rows')}" for name, info in formats.items() if isinstance(info, dict))
    total = manifest.get("rows", sum(info.get("rows", 0) for info in formats.values() if isinstance(info, dict)))
    return f"{total} rows ({per_format})" if per_format else f"{total} rows"


def distill_config(run: Run):
    """The `cotspec train` config of the train stage: <run>/train from <run>/data, every checkpoint kept."""
    from ..distill.config import DistillConfig

    config = run.config
    data = replace(config.data, path=run.dir / "data", store=None, gold=False, data_dir=run.data_dir)
    return DistillConfig(
        out=run.dir / "train", teacher=None, data=data, student=config.student, loss=config.loss,
        lora=config.lora, train=replace(config.train, save_total_limit=None), eval=None,
    )


def _train(run: Run) -> str:
    from ..distill.run import run_training

    summary = run_training(distill_config(run)) or {}
    _return_freed_memory()

    def loss(value: Any) -> str:
        return "-" if value is None else f"{value:.4f}"

    return f"{summary.get('steps')} steps, loss {loss(summary.get('first_loss'))} -> {loss(summary.get('last_loss'))}"


def _return_freed_memory() -> None:
    """Hand the trainer's freed memory back to the system before the evaluations that follow in this
    process. glibc keeps freed heap pages: after 4 steps of SmolLM2-135M the process still held 5.0 GB,
    1.4 GB after ``malloc_trim`` (the following decoding ran at the same speed either way)."""
    gc.collect()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # another C library (musl): nothing to trim by this name
            pass


# --- eval_checkpoints, select, eval_selected ------------------------------------------------------------


def _eval_checkpoints(run: Run) -> str:
    from . import evals

    found = evals.checkpoints(run.dir / "train")
    parts = []
    for step, path in found.items():
        results = evals.evaluate(run.config, run.dir, run.data_dir, evals.step_name(step), str(path), "dev", {})
        parts.append(f"{evals.step_name(step)}: " + evals.describe(results, "dev"))
    return f"{len(found)} checkpoints on dev; " + "; ".join(parts)


def _eval_checkpoints_complete(run: Run) -> bool:
    from . import evals

    found = evals.checkpoints(run.dir / "train")
    return bool(found) and all(evals.complete(run.config, run.dir, evals.step_name(s), "dev") for s in found)


def _select(run: Run) -> str:
    from .selection import select

    record = select(run.config, run.dir, _excluded(run))
    write_json(run.dir / SELECTION_FILE, record)
    picks = ", ".join(f"{k} step {v}" for k, v in record["picked"].items() if v is not None)
    return f"selected step {record['selected'][0]} by {record['criterion']} ({picks})"


def _selected_steps(run: Run) -> list[int]:
    record = read_json(run.dir / SELECTION_FILE) or {}
    return [int(s) for s in record.get("selected") or []]


def _eval_selected(run: Run) -> str:
    from . import evals

    found = evals.checkpoints(run.dir / "train")
    excluded = _excluded(run)
    parts = []
    for step in _selected_steps(run):
        results = evals.evaluate(run.config, run.dir, run.data_dir, evals.step_name(step), str(found[step]), "test", excluded)
        parts.append(f"{evals.step_name(step)}: " + evals.describe(results, "test"))
    return "; ".join(parts)


def _eval_selected_complete(run: Run) -> bool:
    from . import evals

    steps = _selected_steps(run)
    return bool(steps) and all(evals.complete(run.config, run.dir, evals.step_name(s), "test") for s in steps)


def _eval_selected_outputs(run: Run) -> list[Path]:
    return sorted((run.dir / "eval").glob("step-*/test-*"))


# --- report, publish ---------------------------------------------------------------------------------


def _report(run: Run) -> str:
    import logging

    try:
        from ..report import write_report
    except ImportError:
        logging.getLogger(__name__).warning("cotspec.report.write_report is not available: no report written")
        return "skipped: cotspec.report.write_report is not available"
    path = write_report(run.dir)
    return f"{path}"


MODEL_FILES_LEFT_OUT = ("optimizer.pt", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")


def _publish(run: Run) -> str:
    import logging
    import os

    from . import evals

    steps = _selected_steps(run)
    source = evals.checkpoints(run.dir / "train")[steps[0]]
    staging = run.dir / ".staging" / "model"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and path.name not in MODEL_FILES_LEFT_OUT and not path.name.startswith("rng_state"):
            shutil.copy2(path, staging / path.name)
    final = run.dir / "model"
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    shutil.rmtree(run.dir / ".staging", ignore_errors=True)
    card = "no model card (cotspec.report.write_model_card is not available)"
    try:
        from ..report import write_model_card
    except ImportError:
        logging.getLogger(__name__).warning(card)
    else:
        write_model_card(run.dir)
        card = "with its model card"
    return f"{final} from {evals.step_name(steps[0])} ({source.name}), {card}"


def _exists(*names: str) -> Callable[[Run], bool]:
    return lambda run: all((run.dir / name).exists() for name in names)


def _paths(*names: str) -> Callable[[Run], list[Path]]:
    return lambda run: [run.dir / name for name in names]


def _train_strict() -> tuple[str, ...]:
    keys = [k for k in config_system.keys(PipelineConfig) if k.split(".")[0] in ("student", "loss", "lora", "train")]
    keys += ["data.max_length"]
    return tuple(k for k in keys if k not in RESUMABLE_CHANGES and k not in TRAIN_LOOSE)


STAGES: tuple[Stage, ...] = (
    Stage("eval_base", (), ("student.model", "student.trust_remote_code", *EVAL_STRICT), (*DEV_LOOSE, *TEST_LOOSE),
          _paths("eval/base"), _eval_base_complete, _eval_base, applies=lambda c: c.eval.base),
    Stage("sample", (), SAMPLE_STRICT, SAMPLE_LOOSE, _paths("teacher"), lambda run: run.store.is_file(), _sample,
          applies=lambda c: c.teacher is not None),
    Stage("build", ("sample",), (), BUILD_LOOSE, _paths("data"), _exists("data/build.json"), _build),
    Stage("train", ("build",), _train_strict(), TRAIN_LOOSE, _paths("train"), _exists("train/train_summary.json", "train/model"),
          _train, invalidated_by_upstream=True),
    Stage("eval_checkpoints", ("train",), EVAL_STRICT, DEV_LOOSE, lambda run: sorted((run.dir / "eval").glob("step-*")),
          _eval_checkpoints_complete, _eval_checkpoints),
    Stage("select", ("eval_checkpoints",), (), ("select.criterion", "select.test_all_picks"), _paths(SELECTION_FILE),
          _exists(SELECTION_FILE), _select),
    Stage("eval_selected", ("select",), EVAL_STRICT, TEST_LOOSE, _eval_selected_outputs, _eval_selected_complete, _eval_selected),
    Stage("report", ("eval_base", "eval_selected"), (), ("report.enabled",), _paths("report"), _exists("report"), _report,
          applies=lambda c: c.report.enabled),
    Stage("publish", ("select",), (), ("report.publish",), _paths("model"), _exists("model/config.json"), _publish,
          applies=lambda c: c.report.publish),
)
BY_NAME = {stage.name: stage for stage in STAGES}


def dependents(names: set[str]) -> list[str]:
    """`names` and every stage downstream of them, in run order."""
    out = set(names)
    for stage in STAGES:
        if any(dep in out for dep in stage.deps):
            out.add(stage.name)
    return [stage.name for stage in STAGES if stage.name in out]
