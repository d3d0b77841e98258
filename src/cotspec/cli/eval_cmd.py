"""`cotspec eval`: accuracy of a model on the reasoning benchmarks, resumable.

    cotspec eval --model smollm2-135m-instruct --tasks gsm8k --limit 20 --data-dir ../shared/data --out runs/e

Its flags are the fields of `cotspec.evaluate.config.EvalConfig` (`cotspec.cli.options`); the mode is
zero-shot unless `--mode few-shot`.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..evaluate.config import EvalConfig
from .app import app
from .options import config_command


@config_command(app, "eval", EvalConfig, aliases={"base_urls": ["--base-url"], "tasks": ["--task"]})
def eval_command(
    config: EvalConfig,
    show_subtasks: Annotated[bool, typer.Option("--show-subtasks", metavar=" ", help="List every bbh:<task> row in the table.")] = False,
) -> None:
    """Score a model on GSM8K, MultiArith, ASDiv, SVAMP and BIG-Bench Hard; re-running resumes."""
    from ..api import evaluate
    from ..evaluate.runner import markdown_table

    summary = evaluate(config)
    typer.echo(markdown_table(summary, include_subtasks=show_subtasks))
    typer.echo(f"\nwrote {config.out / 'summary.json'}")
