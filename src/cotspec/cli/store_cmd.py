"""`cotspec store stats|export`: read a sample store (never modifying it).

    cotspec store stats runs/teacher.db
    cotspec store export runs/teacher.db --format parquet --file runs/train.parquet --dedup --max-per-question 8
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..config import render
from ..errors import ConfigError, CotspecError
from ..store import FORMATS, NothingToExport, RunConfig, SampleStore, StoreStats
from .app import app

store_app = typer.Typer(help="Inspect and export a teacher sample store.", no_args_is_help=True)
app.add_typer(store_app, name="store")

_STORE_ARG = typer.Argument(help="Sample store file written by `cotspec sample --store`.", show_default=False)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _count(value: int) -> str:
    return f"{value:,}"


def _stats_table(path: Path, stats: StoreStats) -> Table:
    table = Table(title=f"sample store {path}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    table.add_column("note", style="dim")
    table.add_row("questions", _count(stats.questions), "with at least one chain")
    table.add_row("chains", _count(stats.samples), "")
    table.add_row("correct chains", _count(stats.correct), _pct(stats.correct, stats.samples))
    table.add_row(
        "correct per question", f"{stats.yield_mean:.2f}", f"min {stats.yield_min}, max {stats.yield_max}"
    )
    table.add_row("questions with >= 1 correct", _pct(stats.share_with_correct, 1.0), "these reach the training set")
    table.add_row("pass@1", _pct(stats.pass_at_1, 1.0), "unbiased estimator")
    table.add_row(
        f"pass@{stats.k}",
        _pct(stats.pass_at_k, 1.0),
        f"over {stats.questions_at_k:,} questions with >= {stats.k} chains",
    )
    table.add_row("distinct chains", _count(stats.distinct), f"{stats.distinct_correct:,} of them correct")
    table.add_row("prompt tokens", _count(stats.prompt_tokens), "teacher input")
    table.add_row(
        "generated tokens", _count(stats.generated_tokens), f"{stats.kept_tokens:,} kept after the answer-line cut"
    )
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in stats.finish_reasons.items())
    table.add_row("finish reasons", reasons or "-", "")
    table.add_row("chains without logprobs", _count(stats.without_logprobs), "")
    return table


def _describe_run(run_id: int, run: RunConfig) -> str:
    return (
        f"run {run_id}: teacher {run.teacher}, task {run.task}, prompt {run.prompt}, temperature {run.temperature:g}, "
        f"top-p {run.top_p:g}, top-{run.top_logprobs} logprobs, max {run.max_new_tokens} tokens"
    )


@store_app.command("stats")
def stats_command(store: Annotated[Path, _STORE_ARG]) -> None:
    """Yield per question, pass@k, distinct chains and token counts of a sample store."""
    with SampleStore.open(store) as opened:
        stats = opened.stats()
        runs = opened.runs()
    console = Console(file=sys.stdout)
    console.print(_stats_table(store, stats))
    for run_id, run in runs.items():
        console.print(_describe_run(run_id, run), soft_wrap=True, highlight=False)
    if stats.without_logprobs:
        Console(file=sys.stderr, soft_wrap=True).print(
            f"[yellow]warning:[/] {stats.without_logprobs:,} chains have no teacher logprobs; distribution "
            "matching falls back to cross-entropy on their text"
        )


@store_app.command("export")
def export_command(
    store: Annotated[Path, _STORE_ARG],
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--file",
            help="File to write (replaced if it exists); a file, unlike the run directories other commands' --out name.",
            show_default=False,
        ),
    ] = None,
    out_alias: Annotated[Optional[Path], typer.Option("--out", hidden=True)] = None,
    fmt: Annotated[
        str, typer.Option("--format", help=f"Output format: {', '.join(FORMATS)} (both load with datasets).")
    ] = "jsonl",
    correct_only: Annotated[
        bool, typer.Option("--correct-only/--all", help="Keep only chains whose answer matches gold.")
    ] = True,
    dedup: Annotated[
        bool, typer.Option("--dedup", help="Drop chains identical to an earlier one of the same question.")
    ] = False,
    max_per_question: Annotated[
        Optional[int], typer.Option("--max-per-question", help="Keep at most N chains per question (after filtering).")
    ] = None,
) -> None:
    """Write the (filtered) chains with their tokens and top-k log-probabilities as JSON Lines or Parquet."""
    out = out or out_alias
    if out is None:
        raise CotspecError("--file is required: the file to write the chains to (e.g. --file runs/train.jsonl)")
    try:
        _export(store, out, fmt, correct_only, dedup, max_per_question)
    except ConfigError as err:
        raise render(err, lambda key: {"out": "--file", "fmt": "--format"}.get(key, "--" + key.replace("_", "-"))) from None


def _export(store: Path, out: Path, fmt: str, correct_only: bool, dedup: bool, max_per_question: int | None) -> None:
    if fmt not in FORMATS:
        raise CotspecError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    with SampleStore.open(store) as opened:
        try:
            written = opened.export(out, fmt, correct_only=correct_only, dedup=dedup, max_per_question=max_per_question)
        except NothingToExport as err:
            hint = "; --all exports the incorrect chains too" if correct_only else ""
            raise CotspecError(f"{store}: {err}{hint}") from None
    which = "correct chains" if correct_only else "chains"
    typer.echo(f"wrote {written:,} {which} to {out}")
