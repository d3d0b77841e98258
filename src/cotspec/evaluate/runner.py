"""The evaluation loop: prompts for every pending example, one streamed generation, records as they land.

Resuming is the default: examples whose prediction is already on disk are not generated again, and when
nothing is pending the model is never loaded, so a finished run re-summarizes instantly.

A run directory holds one setting, one model and one version of each task: resuming with other settings
(run.json), a model whose files changed (run.json's model_files, see model_files.py) or an example whose
question, prompt or gold changed (each prediction keeps its prompt and gold) is refused, never mixed in.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Callable

from rich.progress import TextColumn

from ..backends import Backend, Completion, SamplingParams, create_backend
from ..errors import ConfigError
from ..progress import make_progress
from ..tasks import resolve_data_dir, resolve_tasks
from ..tasks.base import Example, Task
from ..outputs import EVAL_OUTPUT, check_output_dir, writing_output
from .config import EvalConfig
from .model_files import first_difference, fingerprint, local_model_files
from .predictions import PredictionFile, predictions_path, write_json_atomic
from .voting import majority_vote

BackendFactory = Callable[[EvalConfig], Backend]
RUN_FILE = EVAL_OUTPUT.marker
MODEL_FILES_KEY = "model_files"


@dataclass
class _Pending:
    task: Task
    example: Example
    prompt: str


def build_backend(config: EvalConfig) -> Backend:
    """The backend `config` names (its `backend`), built through the registry: loads the model in-process
    or checks the server settings."""
    return create_backend(config.backend, config.backend_settings)


def run_eval(
    config: EvalConfig,
    make_backend: BackendFactory = build_backend,
    *,
    select_examples: Callable[[Task, list[Example]], list[Example]] | None = None,
) -> dict:
    """Evaluate `config.model` on `config.tasks`, writing predictions and summary.json under `config.out`.

    Every input is checked before anything is written: the run directory is claimed (run.json) only once
    the model has loaded, so a command that fails (a typo in the model name, a bad task file) leaves no trace
    that would refuse the corrected one.
    `select_examples(task, examples)` narrows each task's examples (after `limit`), e.g. to a seeded subset.
    """
    check_output_dir(config.out, EVAL_OUTPUT)
    stored = _stored_run(config)
    model_files = _check_model(config, stored)
    data_dir = resolve_data_dir(config.data_dir)
    tasks = resolve_tasks(",".join(config.tasks))

    files: dict[str, PredictionFile] = {}
    records: dict[str, dict[str, dict]] = {}
    selected: dict[str, list[Example]] = {}
    pending: list[_Pending] = []
    for task in tasks:
        split = config.split or task.default_split
        if split not in task.splits:
            raise ConfigError("split", f"{split!r} does not exist for task {task.name}; it has {', '.join(task.splits)}")
        examples = task.load(data_dir, split)[: config.limit]
        if select_examples is not None:  # `cotspec run`: seeded subsets, dev slices left out of tests
            examples = select_examples(task, examples)
        prompter = task.make_prompter(data_dir, config.prompt_spec)
        files[task.name] = PredictionFile(predictions_path(config.out, task.name))
        records[task.name] = files[task.name].load()
        selected[task.name] = examples
        for example in examples:
            prompt, done = prompter(example), records[task.name].get(example.id)
            if done is None:
                pending.append(_Pending(task, example, prompt))
            else:
                _refuse_stale(files[task.name].path, done, example, prompt)

    if pending:
        if model_files is None:
            model_files = _model_fingerprint(config)
        backend = make_backend(config)
        try:
            _record_run(config, stored, model_files)
            _generate(config, backend, pending, files, records)
        finally:
            backend.close()
            for handle in files.values():
                handle.close()
        for name in {p.task.name for p in pending}:
            files[name].rewrite_in_order(records[name], [ex.id for ex in selected[name]])

    summary = summarize(config, tasks, selected, records)
    with writing_output(config.out):
        write_json_atomic(config.out / "summary.json", summary)
    return summary


def _generate(
    config: EvalConfig,
    backend: Backend,
    pending: list[_Pending],
    files: dict[str, PredictionFile],
    records: dict[str, dict[str, dict]],
) -> None:
    sampling = config.self_consistency > 1
    progress = make_progress(TextColumn("{task.fields[tok_s]:>6.0f} tok/s"))
    started, generated = time.perf_counter(), 0
    with progress:
        bar = progress.add_task(f"eval {config.model}", total=len(pending), tok_s=0.0)

        def count_tokens(n: int) -> None:
            nonlocal generated
            generated += n
            progress.update(bar, tok_s=generated / max(time.perf_counter() - started, 1e-9))

        # Tasks with the same stop sequences share one generation call, so batches span tasks.
        by_stop = sorted(pending, key=lambda p: tuple(p.task.stop))
        for stop, group in groupby(by_stop, key=lambda p: tuple(p.task.stop)):
            items = list(group)
            params = SamplingParams(
                max_new_tokens=config.max_new_tokens,
                temperature=config.sc_temperature if sampling else 0.0,
                n=config.self_consistency,
                stop=stop,
                seed=config.seed,
            )
            for index, completions in backend.generate([p.prompt for p in items], params, on_tokens=count_tokens):
                item = items[index]
                record = _score(item, completions)
                files[item.task.name].append(record)
                records[item.task.name][item.example.id] = record
                progress.advance(bar)


def _score(item: _Pending, completions: list[Completion]) -> dict:
    task, example = item.task, item.example
    extracted_all = [task.extract(c.text) for c in completions]
    if len(completions) == 1:
        extracted, votes = extracted_all[0], None
    else:
        extracted, votes = majority_vote(extracted_all, key=task.vote_key)
    record = {
        "id": example.id,
        "prompt": item.prompt,
        "output": completions[0].text,
        "extracted": extracted,
        "gold": example.answer,
        "correct": bool(task.is_correct(extracted, example.answer)),
        "finish_reason": completions[0].finish_reason,
        "completion_tokens": sum(c.completion_tokens for c in completions),
    }
    if votes is not None:
        record["outputs"] = [c.text for c in completions]
        record["votes"] = votes
    return record


def summarize(
    config: EvalConfig,
    tasks: list[Task],
    selected: dict[str, list[Example]],
    records: dict[str, dict[str, dict]],
) -> dict:
    """Accuracy per task over the selected examples, and per group (micro and macro average)."""
    rows: dict[str, dict] = {}
    for task in tasks:
        done = records[task.name]
        outcomes = [done[ex.id]["correct"] for ex in selected[task.name] if ex.id in done]
        rows[task.name] = _row(sum(outcomes), len(outcomes))
    groups: dict[str, list[str]] = {}
    for task in tasks:
        if task.group:
            groups.setdefault(task.group, []).append(task.name)
    for group, members in groups.items():
        row = _row(sum(rows[m]["correct"] for m in members), sum(rows[m]["n"] for m in members))
        row["macro_accuracy"] = round(sum(rows[m]["accuracy"] for m in members) / len(members), 4)
        row["subtasks"] = len(members)
        rows[group] = row
    return {
        "model": config.model,
        "mode": config.mode.value,
        "answer_only": config.answer_only,
        "self_consistency": config.self_consistency,
        "limit": config.limit,
        "tasks": rows,
    }


def _row(correct: int, n: int) -> dict:
    return {"accuracy": round(correct / n, 4) if n else 0.0, "n": n, "correct": correct}


def markdown_table(summary: dict, include_subtasks: bool = False) -> str:
    """The summary as a Markdown table; group members (bbh:*) are folded into their group row."""
    lines = [
        f"**{summary['model']}**, {summary['mode']}" + (", answer-only" if summary["answer_only"] else ", CoT")
        + (f", self-consistency {summary['self_consistency']}" if summary["self_consistency"] > 1 else ""),
        "",
        "| task | n | correct | accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name, row in summary["tasks"].items():
        if ":" in name and name.startswith("bbh:") and not include_subtasks:
            continue
        accuracy = f"{100 * row['accuracy']:.1f}%"
        if "macro_accuracy" in row:
            accuracy += f" (macro {100 * row['macro_accuracy']:.1f}% over {row['subtasks']} tasks)"
        lines.append(f"| {name} | {row['n']} | {row['correct']} | {accuracy} |")
    return "\n".join(lines)


def _stored_run(config: EvalConfig) -> dict:
    """The run.json of `config.out` ({} for a new run); refuses settings other than the run's own."""
    path = config.out / RUN_FILE
    if not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise ConfigError("out", f"{path}: not valid JSON; delete it or choose another `out`") from None
    if not isinstance(stored, dict):
        raise ConfigError(
            "out", f"{path}: not a run record (expected a JSON object); delete it or choose another `out`"
        )
    for key, value in config.identity().items():
        if key in stored and stored[key] != value:
            raise ConfigError(
                "out",
                f"{config.out} holds a run with {key}={stored[key]!r}, not {value!r}: "
                "choose another `out` or delete that directory",
            )
    return stored


def _check_model(config: EvalConfig, stored: dict) -> dict | None:
    """Refuse a model whose files differ from those the run's predictions came from (retrained in place).

    Returns the model's current fingerprint when there was one to check against, else None. Unchanged
    files are only stat'ed, so a finished run stays instant; a model that is gone is not checked (a
    finished run does not need it, and an unfinished one fails to load it).
    """
    recorded, files = stored.get(MODEL_FILES_KEY), local_model_files(config)
    if not recorded or files is None:
        return None
    current = fingerprint(files, recorded)
    change = first_difference(recorded, current)
    if change is not None:
        raise ConfigError(
            "model",
            f"{config.model}: {change} since {config.out} was started, so its predictions came from "
            "another model; use a new `out` for this one (or restore the model the run began with)",
        )
    return current


def _model_fingerprint(config: EvalConfig) -> dict | None:
    files = local_model_files(config)
    return None if files is None else fingerprint(files)


def _refuse_stale(path: Path, done: dict, example: Example, prompt: str) -> None:
    """A stored prediction answers the example as it is now (question, prompt and gold), or is refused.

    Comparing the stored prompt and gold with today's identifies the task data by content, per example:
    an edited task file, exemplar file or data file is caught, whichever lines were edited.
    """
    if done.get("gold") != example.answer:
        what = f"the gold answer {done.get('gold')!r} (now {example.answer!r})"
    elif done.get("prompt") != prompt:
        what = "another question or prompt than today's"
    else:
        return
    raise ConfigError(
        "out",
        f"{path}: {example.id} was predicted for {what}: the task's file or exemplars changed since; "
        "use a new `out` to evaluate the new version",
    )


def _record_run(config: EvalConfig, stored: dict, model_files: dict | None) -> None:
    """Write run.json: the settings and model files that every prediction in the directory was made with."""
    record = config.identity()
    if model_files is not None:
        record[MODEL_FILES_KEY] = model_files
    if record != stored:  # a resumed run with nothing new to record leaves the file untouched
        with writing_output(config.out):
            config.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(config.out / RUN_FILE, record)
