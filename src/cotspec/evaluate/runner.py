"""The evaluation loop: prompts for every pending example, one streamed generation, records as they land.

Resuming is the default: examples whose prediction is already on disk are not generated again, and when
nothing is pending the model is never loaded, so a finished run re-summarizes instantly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Callable

from rich.progress import TextColumn

from ..backends.base import Backend, Completion, SamplingParams
from ..errors import CotspecError
from ..progress import make_progress
from ..tasks import resolve_data_dir, resolve_tasks
from ..tasks.base import Example, Task
from .config import EvalConfig
from .predictions import PredictionFile, predictions_path, write_json_atomic
from .voting import majority_vote

BackendFactory = Callable[[EvalConfig], Backend]


@dataclass
class _Pending:
    task: Task
    example: Example
    prompt: str


def run_eval(config: EvalConfig, make_backend: BackendFactory) -> dict:
    """Evaluate `config.model` on `config.tasks`, writing predictions and summary.json under `config.out`."""
    data_dir = resolve_data_dir(config.data_dir)
    tasks = resolve_tasks(",".join(config.tasks))
    config.out.mkdir(parents=True, exist_ok=True)
    _check_run_identity(config)

    files: dict[str, PredictionFile] = {}
    records: dict[str, dict[str, dict]] = {}
    selected: dict[str, list[Example]] = {}
    pending: list[_Pending] = []
    for task in tasks:
        split = config.split or task.default_split
        if split not in task.splits:
            raise CotspecError(f"--split {split!r} does not exist for task {task.name}; it has {', '.join(task.splits)}")
        examples = task.load(data_dir, split)[: config.limit]
        prompter = task.make_prompter(data_dir, config.prompt_spec)
        files[task.name] = PredictionFile(predictions_path(config.out, task.name))
        records[task.name] = files[task.name].load()
        selected[task.name] = examples
        pending += [_Pending(task, ex, prompter(ex)) for ex in examples if ex.id not in records[task.name]]

    if pending:
        backend = make_backend(config)
        try:
            _generate(config, backend, pending, files, records)
        finally:
            backend.close()
            for handle in files.values():
                handle.close()
        for name in {p.task.name for p in pending}:
            files[name].rewrite_in_order(records[name], [ex.id for ex in selected[name]])

    summary = summarize(config, tasks, selected, records)
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


def _check_run_identity(config: EvalConfig) -> None:
    """A run directory belongs to one configuration; resuming with another would mix predictions."""
    import json

    path: Path = config.out / "run.json"
    identity = config.identity()
    if path.exists():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            raise CotspecError(f"{path}: not valid JSON; delete it or choose another --out") from None
        for key, value in identity.items():
            if key in stored and stored[key] != value:
                raise CotspecError(
                    f"{config.out} holds a run with {key}={stored[key]!r}, not {value!r}: "
                    "choose another --out or delete that directory"
                )
    write_json_atomic(path, identity)
