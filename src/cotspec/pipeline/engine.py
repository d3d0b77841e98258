"""Deciding what each stage does (skip, run, resume, redo, refuse) and running them in order.

Everything that can refuse (a foreign run directory, a changed setting, an unknown --force-stage, an
unreachable teacher) is decided before the first stage runs, so a refusal leaves every finished output
as it was.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from .. import config as config_system
from ..errors import CotspecError
from ..outputs import check_output_dir, writing_output
from .config import PipelineConfig, to_yaml
from .stages import BY_NAME, STAGES, Run, Stage, dependents
from .state import CONFIG_FILE, RUN_OUTPUT, VERSIONS_FILE, RunState, sha256_json, versions, write_json, write_text


@dataclass
class Decision:
    stage: Stage
    action: str
    """``skip`` (done, same inputs), ``run``, ``resume`` (interrupted), ``rerun`` (inputs extended),
    ``redo`` (forced), ``not configured``."""
    inputs_sha256: str
    settings: dict[str, Any]
    """The strict settings (recorded; a later change of one is refused)."""


def stage_settings(flat: dict[str, Any]) -> tuple[dict[str, dict], dict[str, dict]]:
    """(strict, full) settings of every stage, upstream stages' included."""
    strict: dict[str, dict] = {}
    full: dict[str, dict] = {}
    for stage in STAGES:
        own_strict = {k: flat.get(k) for k in stage.strict}
        own_full = {**own_strict, **{k: flat.get(k) for k in stage.loose}}
        s, f = dict(own_strict), dict(own_full)
        for dep in stage.deps:
            s.update(full[dep] if stage.invalidated_by_upstream else strict[dep])
            f.update(full[dep])
        strict[stage.name], full[stage.name] = s, f
    return strict, full


def owner(key: str) -> str:
    """The first stage whose own settings hold `key` (the one to force when it changed)."""
    for stage in STAGES:
        if key in stage.strict or key in stage.loose:
            return stage.name
    return STAGES[0].name


def decide(run: Run, state: RunState, force: Sequence[str]) -> list[Decision]:
    unknown = [name for name in force if name not in BY_NAME]
    if unknown:
        raise CotspecError(f"--force-stage {unknown[0]}: no such stage; stages: {', '.join(BY_NAME)}")
    forced = set(dependents(set(force)))
    strict, full = stage_settings(run.flat)
    decisions: list[Decision] = []
    for stage in STAGES:
        record = state.stage(stage.name)
        inputs = sha256_json(full[stage.name])
        if not stage.applies(run.config):
            decisions.append(Decision(stage, "not configured", inputs, strict[stage.name]))
            continue
        if stage.name in forced:
            decisions.append(Decision(stage, "redo" if record else "run", inputs, strict[stage.name]))
            continue
        if record is None:
            decisions.append(Decision(stage, "run", inputs, strict[stage.name]))
            continue
        _refuse_changed(run, stage, record, strict[stage.name])
        if record.get("status") != "done":
            action = "resume"
        elif record.get("inputs_sha256") != inputs:
            action = "rerun"
        else:
            action = "skip" if stage.complete(run) else "resume"
        decisions.append(Decision(stage, action, inputs, strict[stage.name]))
    return decisions


def up_to(decisions: list[Decision], until: str | None) -> list[Decision]:
    """The decisions of the stages up to and including `until` (all of them for None)."""
    if until is None:
        return decisions
    if until not in BY_NAME:
        raise CotspecError(f"--until {until}: no such stage; stages: {', '.join(BY_NAME)}")
    names = [d.stage.name for d in decisions]
    return decisions[: names.index(until) + 1]


def _refuse_changed(run: Run, stage: Stage, record: dict, now: dict[str, Any]) -> None:
    before = record.get("settings") or {}
    changed = config_system.differing_keys(before, now)
    if not changed:
        return
    key = changed[0]
    force = owner(key)
    raise CotspecError(
        f"{key}: {run.dir} holds work made with {key}={before.get(key)!r} (stage {stage.name} "
        f"{record.get('status')}), now {now.get(key)!r}, which would invalidate it; keep the setting, choose "
        f"another --out, or add --force-stage {force} to redo {', '.join(dependents({force}))}"
    )


def prepare(config: PipelineConfig, out: Path, data_dir: Path) -> tuple[Run, RunState]:
    check_output_dir(out, RUN_OUTPUT)
    state = RunState(out)
    return Run(config=config, dir=out, data_dir=data_dir, flat=config_system.flatten(config)), state


def execute(
    run: Run,
    state: RunState,
    decisions: list[Decision],
    config_file: Path | None,
    say: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
) -> dict[str, Any]:
    """Run the decided stages in order; returns {stage: summary line}."""
    if any(d.action in ("run", "resume", "rerun", "redo") for d in decisions if d.stage.name == "sample"):
        from .teacher import check_teacher

        check_teacher(run.config.teacher)
    with writing_output(run.dir):
        run.dir.mkdir(parents=True, exist_ok=True)
        state.data["config_file"] = None if config_file is None else str(config_file)
        state.save()
        write_text(run.dir / CONFIG_FILE, to_yaml(run.config))
        write_json(run.dir / VERSIONS_FILE, versions())
    for decision in decisions:
        if decision.action == "redo":
            for path in decision.stage.outputs(run):
                shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            state.forget(decision.stage.name)
    summaries: dict[str, Any] = {}
    ran: set[str] = set()
    total = len(decisions)
    for index, decision in enumerate(decisions, 1):
        stage = decision.stage
        head = f"[{index}/{total}] {stage.name}"
        if decision.action == "not configured":
            continue
        if decision.action == "skip" and not ran.intersection(stage.deps):
            record = state.stage(stage.name) or {}
            summaries[stage.name] = record.get("summary")
            say(f"{head}: done earlier, skipped — {record.get('summary')}")
            continue
        state.start(stage.name, decision.inputs_sha256, decision.settings)
        started = time.monotonic()
        say(f"{head}: {'resuming' if decision.action == 'resume' else 'running'}")
        with state.clock(stage.name):
            summary = stage.execute(run)
        seconds = time.monotonic() - started
        ran.add(stage.name)
        if summary is None or summary.startswith("skipped:"):
            state.forget(stage.name)
            say(f"{head}: {summary or 'skipped'}")
            continue
        state.finish(stage.name, summary)
        summaries[stage.name] = summary
        record = state.stage(stage.name) or {}
        pieces = record.get("pieces", 1)
        total = f" ({record.get('seconds'):.1f}s over {pieces} pieces)" if pieces > 1 else ""
        say(f"{head}: done in {seconds:.1f}s{total} — {summary}")
    return summaries
