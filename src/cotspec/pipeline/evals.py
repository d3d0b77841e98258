"""The run's evaluations: each one a normal `cotspec eval` output directory under
``<run>/eval/<model>/<suite>-<mode>/`` (model ``base`` or ``step-<N>``, suite ``dev`` or ``test``).

Every evaluation goes through `run_eval`, so each resumes by itself (examples already predicted are not
generated again) and a finished one re-summarizes without loading the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..distill.rundir import checkpoint_dirs, checkpoint_step
from ..evaluate.config import EvalConfig
from ..tasks.base import Mode
from .config import PipelineConfig
from .subsets import Selector, dev_selector, test_selector

BASE = "base"


def make_eval_backend(config: EvalConfig) -> Any:
    """The backend of one evaluation (a model load); a seam tests count loads through."""
    from ..evaluate.runner import build_backend

    return build_backend(config)


def eval_dir(run_dir: Path, model: str, suite: str, mode: Mode) -> Path:
    return run_dir / "eval" / model / f"{suite}-{Mode(mode).value}"


def step_name(step: int) -> str:
    return f"step-{step}"


def eval_config(config: PipelineConfig, model_ref: str, tasks: tuple[str, ...], mode: Mode, out: Path, data_dir: Path) -> EvalConfig:
    e = config.eval
    return EvalConfig(
        model=model_ref,
        tasks=tasks,
        out=out,
        mode=Mode(mode),
        exemplars=e.exemplars,
        shots=e.shots,
        max_new_tokens=e.max_new_tokens,
        seed=e.seed,
        batch_size=e.batch_size,
        dtype=e.dtype,
        backend="transformers",
        trust_remote_code=config.student.trust_remote_code,
        data_dir=data_dir,
    )


def planned(config: PipelineConfig, suite: str) -> tuple[tuple[str, ...], tuple[Mode, ...]]:
    """(tasks, modes) of a suite."""
    if suite == "dev":
        return config.select.dev_tasks, config.select.modes
    return config.eval.tasks, config.eval.modes


def evaluate(
    config: PipelineConfig, run_dir: Path, data_dir: Path, model: str, model_ref: str, suite: str,
    excluded: dict[str, list[str]],
) -> dict[str, dict]:
    """Evaluate `model_ref` on one suite in every configured mode; {mode: summary}."""
    from ..evaluate.runner import run_eval

    tasks, modes = planned(config, suite)
    chooser: Selector = dev_selector(config) if suite == "dev" else test_selector(config, excluded)
    results = {}
    for mode in modes:
        cfg = eval_config(config, model_ref, tasks, mode, eval_dir(run_dir, model, suite, mode), data_dir)
        _follow_moved_run(cfg.out, model_ref, run_dir)
        results[Mode(mode).value] = run_eval(cfg, make_eval_backend, select_examples=chooser)
    return results


def _follow_moved_run(out: Path, model_ref: str, run_dir: Path) -> None:
    """A run directory that was moved or copied keeps its evaluations: an eval's run.json that names a
    checkpoint of this run under the run's old path is updated to the new one (the model's files are
    still compared by content, so a different model is refused all the same)."""
    record_path = out / "run.json"
    if not record_path.is_file():
        return
    try:
        relative = Path(model_ref).resolve().relative_to(Path(run_dir).resolve())
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return
    stored = record.get("model")
    if isinstance(stored, str) and stored != model_ref and Path(stored).parts[-len(relative.parts):] == relative.parts:
        from .state import write_json

        record["model"] = model_ref
        write_json(record_path, record)


def complete(config: PipelineConfig, run_dir: Path, model: str, suite: str) -> bool:
    _, modes = planned(config, suite)
    return all((eval_dir(run_dir, model, suite, mode) / "summary.json").is_file() for mode in modes)


def read_summary(config: PipelineConfig, run_dir: Path, model: str, suite: str) -> dict[str, dict]:
    _, modes = planned(config, suite)
    out = {}
    for mode in modes:
        path = eval_dir(run_dir, model, suite, mode) / "summary.json"
        out[Mode(mode).value] = json.loads(path.read_text(encoding="utf-8"))
    return out


def describe(results: dict[str, dict], suite: str) -> str:
    """``dev-zero-shot gsm8k-dev 25.0% (n=4), svamp 0.0% (n=4)``; bbh subtasks folded into bbh."""
    parts = []
    for mode, summary in results.items():
        cells = [f"{name} {100 * row['accuracy']:.1f}% (n={row['n']})" for name, row in summary["tasks"].items()
                 if not name.startswith("bbh:")]
        parts.append(f"{suite}-{mode} " + ", ".join(cells))
    return "; ".join(parts)


def checkpoints(train_dir: Path) -> dict[int, Path]:
    """Step -> model directory of every complete checkpoint, plus the final model when its step has no
    checkpoint of its own."""
    found: dict[int, Path] = {}
    for path in checkpoint_dirs(train_dir):
        step = checkpoint_step(path)
        if step is not None:
            found[step] = path
    try:
        steps = json.loads((train_dir / "train_summary.json").read_text(encoding="utf-8"))["steps"]
    except (OSError, ValueError, KeyError, TypeError):
        steps = None
    if isinstance(steps, int) and steps not in found and (train_dir / "model" / "config.json").is_file():
        found[steps] = train_dir / "model"
    return dict(sorted(found.items()))
