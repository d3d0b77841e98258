"""`cotspec run --dry-run`: the plan, without loading a model or touching the network.

Every number is an estimate from the config and the benchmark files: questions x chains, teacher tokens
(prompt length in characters / 4, and the most a chain may generate), training rows (an upper bound: as
if every chain were correct), tokens (rows x a typical row length), optimizer steps, checkpoints, the
evaluations, and the training memory per device (parameters x 16 bytes for float32 weights, gradients
and AdamW's two moments, divided over the GPUs as the ZeRO stage shards them; activations not included).
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import CotspecError
from ..formats.templates import IN_CONTEXT_FORMATS
from ..tasks.base import Mode, PromptSpec
from .config import PipelineConfig
from .engine import Decision
from .stages import Run

CHARS_PER_TOKEN = 4
QUESTION_TOKENS, CHAIN_TOKENS, EXEMPLAR_TOKENS = 60, 100, 160
"""Typical GSM8K lengths in tokens: a question, a solution, an in-context exemplar (question + solution)."""
KNOWN_SIZES = {
    "smollm2-135m-instruct": 134_515_008, "flan-t5-small": 77_000_000, "flan-t5-base": 248_000_000,
    "flan-t5-large": 783_000_000, "flan-t5-xl": 2_850_000_000, "flan-t5-xxl": 11_300_000_000,
}


@contextmanager
def _offline() -> Iterator[None]:
    before = os.environ.get("COTSPEC_OFFLINE")
    os.environ["COTSPEC_OFFLINE"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("COTSPEC_OFFLINE", None)
        else:
            os.environ["COTSPEC_OFFLINE"] = before


def _count(run: Run, suite: str) -> dict[str, int | None]:
    """Task -> questions one evaluation of `suite` asks."""
    from ..tasks import resolve_tasks
    from .evals import planned
    from .subsets import dev_selector, ood_slice_ids, test_selector

    tasks, _ = planned(run.config, suite)
    out: dict[str, int | None] = {}
    try:
        chooser = dev_selector(run.config) if suite == "dev" else test_selector(run.config, ood_slice_ids(run.config, run.data_dir))
        for task in resolve_tasks(",".join(tasks)):
            n = len(chooser(task, task.load(run.data_dir, task.default_split)))
            key = task.group or task.name
            out[key] = (out.get(key) or 0) + n
    except CotspecError:
        for name in tasks:
            out.setdefault(name, None)
    return out


def _show(counts: dict[str, int | None]) -> str:
    return ", ".join(f"{name} {'?' if n is None else n}" for name, n in counts.items())


def _total(counts: dict[str, int | None]) -> int | None:
    return None if any(n is None for n in counts.values()) else sum(counts.values())  # type: ignore[arg-type]


def _teacher_questions(run: Run) -> tuple[int | None, int | None]:
    """(questions sampled, prompt tokens per question)."""
    from ..tasks import get_task, gsm8k_dev_ids
    from ..teacher.sampler import select_questions

    teacher = run.config.teacher
    try:
        task = get_task(teacher.task)
        examples = select_questions(task, teacher.for_store(Path("unused.db")), run.data_dir, gsm8k_dev_ids)
        exemplars, shots = teacher.exemplar_choice
        prompter = task.make_prompter(run.data_dir, PromptSpec(mode=Mode.FEW_SHOT, cot=True, exemplars=exemplars, shots=shots))
        return len(examples), len(prompter(examples[0])) // CHARS_PER_TOKEN
    except CotspecError:
        return None, None


def _train_questions(run: Run, teacher_questions: int | None) -> int | None:
    config = run.config
    if config.teacher is not None and not config.data.gold:
        base = teacher_questions
    else:
        base = 7473 - 200  # GSM8K train minus the dev questions
        if teacher_questions is not None:
            base = max(base if config.data.gold else 0, teacher_questions)
    if base is None:
        return None
    return min(base, config.data.limit) if config.data.limit else base


def parameters(model: str) -> int | None:
    """Parameters of a student, without loading it: safetensors headers, a known size, or the size in its name."""
    path = Path(model).expanduser()
    if path.is_dir():
        total = 0
        for file in sorted(path.glob("*.safetensors")):
            with open(file, "rb") as handle:
                (size,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(size))
            total += sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__")
        return total or None
    name = model.rsplit("/", 1)[-1].lower()
    if name in KNOWN_SIZES:
        return KNOWN_SIZES[name]
    match = re.search(r"(\d+(?:\.\d+)?)([mb])\b", name)
    if match:
        return int(float(match.group(1)) * (1e6 if match.group(2) == "m" else 1e9))
    return None


def memory_per_device(config: PipelineConfig, params: int) -> float:
    """GiB of weights + gradients + AdamW states per device (float32 master weights)."""
    gpus, stage = config.resources.gpus, config.resources.zero_stage
    trainable = params * 0.01 if config.lora.enabled else params  # LoRA: about 1% trainable
    weights = 4 * params / (gpus if stage >= 3 else 1)
    grads = 4 * trainable / (gpus if stage >= 2 else 1)
    adam = 8 * trainable / (gpus if stage >= 1 else 1)
    return (weights + grads + adam) / 2**30


def describe_plan(run: Run, decisions: list[Decision]) -> str:
    config = run.config
    lines = [f"plan for {run.dir}:"]
    with _offline():
        dev, test = _count(run, "dev"), _count(run, "test")
        questions, prompt_tokens = _teacher_questions(run) if config.teacher is not None else (None, None)
    details: dict[str, str] = {}
    n_dev, n_test = _total(dev), _total(test)
    dev_modes = [m.value for m in config.select.modes]
    test_modes = [m.value for m in config.eval.modes]
    details["eval_base"] = f"base on dev ({_show(dev)}) x {','.join(dev_modes)}; test ({_show(test)}) x {','.join(test_modes)}"
    if config.teacher is not None:
        t = config.teacher
        server = "embedded llama.cpp server" if t.server == "embedded" else (", ".join(t.base_urls) or f"{t.backend} in-process")
        if questions is None:
            details["sample"] = f"{t.model} via {server}: ? questions x {t.n} chains"
        else:
            chains = questions * t.n
            details["sample"] = (f"{t.model} via {server}: {questions} questions x {t.n} chains = {chains} chains; "
                                 f"~{questions * t.n * prompt_tokens:,} prompt tokens, <= {chains * t.max_new_tokens:,} generated tokens")
    train_q = _train_questions(run, questions)
    formats = config.data.formats
    cot = [f for f in formats if f.endswith("_cot")]
    chains_per_q = (min(config.teacher.n, config.data.max_per_question or config.teacher.n) if config.teacher else 0) + int(config.data.gold)
    if train_q is None:
        rows = tokens = steps = None
    else:
        rows = train_q * (len(cot) * chains_per_q + len(formats) - len(cot))
        in_context = sum(1 for f in formats if f in IN_CONTEXT_FORMATS) / len(formats)
        tokens = int(rows * (QUESTION_TOKENS + CHAIN_TOKENS + in_context * config.data.shots * EXEMPLAR_TOKENS))
        tr = config.train
        # One format per step where per-format micro-batches are set: the mean step size over the formats.
        step_rows = sum(tr.rows_per_step(f, config.resources.gpus) for f in formats) / len(formats)
        steps = tr.max_steps if tr.max_steps is not None else math.ceil(tr.epochs * rows / step_rows)
    details["build"] = f"<= {rows if rows is not None else '?'} rows over {len(formats)} formats from {train_q or '?'} questions"
    params = parameters(config.student.model)
    memory = "?" if params is None else f"~{memory_per_device(config, params):.1f} GiB"
    details["train"] = (f"{config.student.model} ({'?' if params is None else f'{params / 1e6:,.1f}M'} params): "
                        f"<= {rows if rows is not None else '?'} rows, ~{tokens if tokens is not None else '?':,} tokens, "
                        f"{steps if steps is not None else '?'} steps; memory per device {memory} "
                        f"(weights+grads+AdamW, {config.resources.gpus} GPU(s), ZeRO {config.resources.zero_stage}; activations extra)"
                        if tokens is not None else
                        f"{config.student.model}: ? rows, ? steps; memory per device {memory}")
    n_ckpt = None if steps is None else max(1, math.ceil(steps / config.train.save_every))
    details["eval_checkpoints"] = (f"{n_ckpt if n_ckpt is not None else '?'} checkpoints (every {config.train.save_every} steps) x "
                                   f"{n_dev if n_dev is not None else '?'} dev questions x {len(dev_modes)} mode(s)")
    details["select"] = f"criterion {config.select.criterion}; OOD dev: {config.select.ood or 'none'}"
    picks = "up to 3 picks" if config.select.test_all_picks else "1 checkpoint"
    details["eval_selected"] = f"{picks} x {n_test if n_test is not None else '?'} test questions x {len(test_modes)} mode(s)"
    details["report"] = "report.md, report.html, PNGs in report/"
    details["publish"] = "the selected checkpoint as model/ with a model card"
    width = max(len(d.stage.name) for d in decisions)
    for decision in decisions:
        lines.append(f"  {decision.stage.name:<{width}}  {decision.action:<14}  {details.get(decision.stage.name, '')}")
    if n_dev is not None and n_test is not None and n_ckpt is not None:
        generations = (n_dev * len(dev_modes) + n_test * len(test_modes)) * int(config.eval.base)
        generations += n_ckpt * n_dev * len(dev_modes) + n_test * len(test_modes)
        lines.append(f"evaluations: ~{generations:,} generations of <= {config.eval.max_new_tokens} tokens")
    return "\n".join(lines)


def plan_summary(run: Run, decisions: list[Decision]) -> dict[str, Any]:
    return {d.stage.name: d.action for d in decisions}
