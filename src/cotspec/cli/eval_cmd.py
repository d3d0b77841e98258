"""`cotspec eval`: accuracy of a model on the reasoning benchmarks, resumable.

    cotspec eval --model smollm2-135m-instruct --tasks gsm8k --mode zero-shot --limit 20 \
        --data-dir ../shared/data --out runs/e
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..evaluate.config import EvalConfig
from ..fieldhelp import field_docs
from ..tasks.base import Mode
from .main import app

_doc = field_docs(EvalConfig)


def _opt(name: str, *flags: str, **kwargs) -> typer.Option:  # type: ignore[valid-type]
    return typer.Option(*flags, help=_doc[name], **kwargs)


@app.command("eval")
def eval_command(
    model: Annotated[str, _opt("model", "--model")],
    out: Annotated[Path, _opt("out", "--out")],
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated " + _doc["tasks"])] = "gsm8k",
    mode: Annotated[Mode, _opt("mode", "--mode")] = Mode.FEW_SHOT,
    answer_only: Annotated[bool, _opt("answer_only", "--answer-only")] = False,
    exemplars: Annotated[Optional[str], _opt("exemplars", "--exemplars")] = None,
    shots: Annotated[Optional[int], _opt("shots", "--shots")] = None,
    split: Annotated[Optional[str], _opt("split", "--split")] = None,
    limit: Annotated[Optional[int], _opt("limit", "--limit")] = None,
    self_consistency: Annotated[int, _opt("self_consistency", "--self-consistency")] = 1,
    sc_temperature: Annotated[float, _opt("sc_temperature", "--sc-temperature")] = 0.7,
    max_new_tokens: Annotated[int, _opt("max_new_tokens", "--max-new-tokens")] = 256,
    batch_size: Annotated[int, _opt("batch_size", "--batch-size")] = 32,
    backend: Annotated[str, _opt("backend", "--backend")] = "transformers",
    base_url: Annotated[Optional[list[str]], _opt("base_urls", "--base-url")] = None,
    api_key_env: Annotated[Optional[str], _opt("api_key_env", "--api-key-env")] = None,
    concurrency: Annotated[int, _opt("concurrency", "--concurrency")] = 8,
    dtype: Annotated[str, _opt("dtype", "--dtype")] = "auto",
    trust_remote_code: Annotated[bool, _opt("trust_remote_code", "--trust-remote-code")] = False,
    seed: Annotated[int, _opt("seed", "--seed")] = 0,
    data_dir: Annotated[Optional[Path], _opt("data_dir", "--data-dir")] = None,
    show_subtasks: Annotated[bool, typer.Option("--show-subtasks", help="List every bbh:<task> row in the table.")] = False,
) -> None:
    """Score a model on GSM8K, MultiArith, ASDiv, SVAMP and BIG-Bench Hard; re-running resumes."""
    from ..evaluate.backend_factory import build_backend
    from ..evaluate.runner import markdown_table, run_eval

    config = EvalConfig(
        model=model,
        tasks=tuple(t.strip() for t in tasks.split(",") if t.strip()),
        out=out,
        mode=mode,
        answer_only=answer_only,
        exemplars=exemplars,
        shots=shots,
        split=split,
        limit=limit,
        self_consistency=self_consistency,
        sc_temperature=sc_temperature,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        backend=backend,
        base_urls=tuple(base_url or ()),
        api_key_env=api_key_env,
        concurrency=concurrency,
        dtype=dtype,
        trust_remote_code=trust_remote_code,
        seed=seed,
        data_dir=data_dir,
    )
    summary = run_eval(config, build_backend)
    typer.echo(markdown_table(summary, include_subtasks=show_subtasks))
    typer.echo(f"\nwrote {out / 'summary.json'}")
