"""`cotspec run`: one command from a teacher and a student to a specialized, selected, evaluated model.

    import cotspec.pipeline
    result = cotspec.pipeline.run("configs/demo-cpu.yaml", out="runs/demo", overrides=["train.max_steps=4"])

Stages (`cotspec.pipeline.stages`): eval_base -> sample -> build -> train -> eval_checkpoints -> select
-> eval_selected -> report -> publish, over one run directory::

    <run>/config.yaml  state.json  versions.json  selection.json
    <run>/teacher/samples.db   <run>/data/   <run>/train/   <run>/eval/<model>/<suite>-<mode>/
    <run>/model/   <run>/report/

Re-running skips finished stages with the same inputs, resumes interrupted ones, and refuses (one line
naming the key) a changed setting that would invalidate finished work unless that stage is forced.
Nothing heavy is imported until a run starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["run"]


def run(
    config: Any = None,
    /,
    *,
    out: str | Path | None = None,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    dry_run: bool = False,
    force_stages: Sequence[str] = (),
    until: str | None = None,
) -> dict[str, Any]:
    """Run (or with `dry_run`, plan) the pipeline; returns ``{"run_dir", "plan", "summaries"}``.

    Args:
        config: a `PipelineConfig`, or the path of a YAML config file.
        out: run directory; default ``runs/<config file stem>`` (required for a config object).
        overrides: ``"key=value"`` texts or a mapping of dotted keys, applied over the file.
        dry_run: print the plan and return without running anything.
        force_stages: stages to redo (their downstream stages are redone too).
        until: stop after this stage (a later run without it goes on from there): a long run in pieces,
            or training and selection without the test evaluations.
    """
    from ..errors import CotspecError
    from .config import PipelineConfig, load_pipeline_config

    config_file: Path | None = None
    if isinstance(config, PipelineConfig):
        if overrides:
            raise CotspecError("cotspec.run: pass a PipelineConfig or a YAML file with overrides, not both")
        resolved = config
        if out is None:
            raise CotspecError("cotspec.run: out is required with a PipelineConfig (no config file to name it after)")
    else:
        if config is None:
            raise CotspecError("cotspec.run: give a config (a YAML file or a PipelineConfig)")
        config_file = Path(config)
        texts = [f"{k}={v}" for k, v in overrides.items()] if isinstance(overrides, Mapping) else [str(o) for o in overrides]
        resolved = load_pipeline_config(config_file, texts)
    run_dir = Path(out) if out is not None else Path("runs") / config_file.stem  # type: ignore[union-attr]
    return run_config(resolved, run_dir, config_file=config_file, dry_run=dry_run, force_stages=force_stages,
                      until=until)


def run_config(config: Any, run_dir: Path, *, config_file: Path | None = None, dry_run: bool = False,
               force_stages: Sequence[str] = (), until: str | None = None) -> dict[str, Any]:
    import sys

    from ..tasks import resolve_data_dir
    from . import engine, plan

    data_dir = resolve_data_dir(config.data_dir or (config.teacher.data_dir if config.teacher else None) or config.data.data_dir)
    run_state, state = engine.prepare(config, Path(run_dir), data_dir)
    decisions = engine.decide(run_state, state, force_stages)
    decisions = engine.up_to(decisions, until)
    if dry_run:
        text = plan.describe_plan(run_state, decisions)
        print(text, flush=True)
        return {"run_dir": Path(run_dir), "plan": plan.plan_summary(run_state, decisions), "summaries": {}, "text": text}
    redo = [d.stage.name for d in decisions if d.action == "redo"]
    if force_stages:
        print(f"--force-stage {','.join(force_stages)}: redoing {', '.join(redo) or 'nothing finished yet'}", file=sys.stderr, flush=True)
    summaries = engine.execute(run_state, state, decisions, config_file)
    return {"run_dir": Path(run_dir), "plan": plan.plan_summary(run_state, decisions), "summaries": summaries}
