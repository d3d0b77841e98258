"""`cotspec sample`: draw teacher chains of thought into a sample store; re-running resumes.

    cotspec sample --tasks gsm8k --split train --n 40 --temperature 0.5 --top-logprobs 5 \
        --base-urls http://127.0.0.1:8080/v1 --model teacher --store runs/teacher.db --data-dir ../shared/data

Its flags are the fields of `cotspec.teacher.config.SampleConfig` (`cotspec.cli.options`); `--model` is
the model that generates, as in `cotspec eval`: without `--base-urls` it is loaded in-process.
"""

from __future__ import annotations

import typer

from ..teacher.config import SampleConfig
from .app import app
from .options import config_command

# Old spellings, still accepted (hidden from --help).
ALIASES = {
    "model": ["--teacher"],
    "tasks": ["--task"],
    "max_new_tokens": ["--max-tokens"],
    "base_urls": ["--base-url"],
}


@config_command(app, "sample", SampleConfig, aliases=ALIASES)
def sample_command(config: SampleConfig) -> None:
    """Sample --n chains per question from a teacher, score them, and store each as it arrives."""
    from ..api import sample

    report = sample(config)
    store, n = config.store, config.n
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
