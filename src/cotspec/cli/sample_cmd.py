"""`cotspec sample`: draw teacher chains of thought into a sample store; re-running resumes.

    cotspec sample --task gsm8k --split train --n 40 --temperature 0.5 --top-logprobs 5 \
        --base-url http://127.0.0.1:8080/v1 --model teacher --store runs/teacher.db --data-dir ../shared/data
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..fieldhelp import field_docs
from ..teacher.config import SampleConfig
from .main import app

_doc = field_docs(SampleConfig)


def _opt(name: str, *flags: str, **kwargs) -> typer.Option:  # type: ignore[valid-type]
    return typer.Option(*flags, help=_doc[name], **kwargs)


@app.command("sample")
def sample_command(
    store: Annotated[Path, _opt("store", "--store")],
    task: Annotated[str, _opt("task", "--task")] = "gsm8k",
    split: Annotated[str, _opt("split", "--split")] = "train",
    limit: Annotated[Optional[int], _opt("limit", "--limit")] = None,
    n: Annotated[int, _opt("n", "--n")] = 40,
    temperature: Annotated[float, _opt("temperature", "--temperature")] = 0.5,
    top_p: Annotated[float, _opt("top_p", "--top-p")] = 1.0,
    top_logprobs: Annotated[int, _opt("top_logprobs", "--top-logprobs")] = 5,
    max_tokens: Annotated[int, _opt("max_new_tokens", "--max-tokens")] = 256,
    base_url: Annotated[Optional[list[str]], _opt("base_urls", "--base-url")] = None,
    model: Annotated[Optional[str], _opt("model", "--model")] = None,
    api_key_env: Annotated[Optional[str], _opt("api_key_env", "--api-key-env")] = None,
    concurrency: Annotated[int, _opt("concurrency", "--concurrency")] = 8,
    teacher: Annotated[Optional[str], _opt("teacher", "--teacher")] = None,
    dtype: Annotated[str, _opt("dtype", "--dtype")] = "auto",
    batch_size: Annotated[int, _opt("batch_size", "--batch-size")] = 16,
    seed: Annotated[Optional[int], _opt("seed", "--seed")] = None,
    exemplars: Annotated[Optional[str], _opt("exemplars", "--exemplars")] = None,
    shots: Annotated[Optional[int], _opt("shots", "--shots")] = None,
    prompt_file: Annotated[Optional[Path], _opt("prompt_file", "--prompt-file")] = None,
    answer_marker: Annotated[str, _opt("answer_marker", "--answer-marker")] = "The answer is",
    include_dev: Annotated[bool, _opt("include_dev", "--include-dev")] = False,
    allow_mixed_runs: Annotated[bool, _opt("allow_mixed_runs", "--allow-mixed-runs")] = False,
    data_dir: Annotated[Optional[Path], _opt("data_dir", "--data-dir")] = None,
) -> None:
    """Sample --n chains per question from a teacher, score them, and store each as it arrives."""
    from ..teacher.sampler import make_teacher_backend, run_sampling

    config = SampleConfig(
        store=store,
        task=task,
        split=split,
        limit=limit,
        n=n,
        temperature=temperature,
        top_p=top_p,
        top_logprobs=top_logprobs,
        max_new_tokens=max_tokens,
        base_urls=tuple(base_url or ()),
        model=model,
        api_key_env=api_key_env,
        concurrency=concurrency,
        teacher=teacher,
        dtype=dtype,
        batch_size=batch_size,
        seed=seed,
        exemplars=exemplars,
        shots=shots,
        prompt_file=prompt_file,
        answer_marker=answer_marker,
        include_dev=include_dev,
        allow_mixed_runs=allow_mixed_runs,
        data_dir=data_dir,
    )
    report = run_sampling(config, make_teacher_backend)
    stored = report.already_stored + report.written
    if report.written == 0 and report.already_stored == report.wanted:
        typer.echo(
            f"{store}: all {report.wanted} chains ({report.questions} questions x {n}) already stored; nothing to do"
        )
    else:
        rate = report.written / report.seconds if report.seconds > 0 else 0.0
        typer.echo(
            f"wrote {report.written} chains ({report.written_correct} correct) in {report.seconds:.1f} s "
            f"({rate:.2f} chains/s); {store} now holds {stored} of {report.wanted}"
        )
    typer.echo(f"next: cotspec store stats {store}")
