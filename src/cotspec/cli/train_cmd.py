"""`cotspec train`: distill a student on a `cotspec build` output; re-running resumes.

    cotspec train --config configs/distill-gold.yaml --data runs/data-gold --out runs/student train.max_steps=50
    accelerate launch --config_file configs/accelerate/ddp.yaml -m cotspec.cli.main train --config ... --out ...

Its settings are `cotspec.distill.config.DistillConfig`: a YAML file, then --data / --out, then
``key=value`` overrides (`cotspec.config.load`); --help lists every key with its default and doc.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..config import render
from ..distill.config import help_lines, load_config, to_yaml
from ..errors import ConfigError
from .app import app

FLAGS = {"out": "--out", "data.path": "--data"}
"""Config keys that have a flag of their own; every other key is set as ``key=value``."""


def _epilog() -> str:
    from rich.markup import escape

    rows = [f"[bold]{key}[/bold] = {escape(default)}  {escape(doc)}" for key, default, doc in help_lines()]
    return (
        "Config keys (YAML sections or key=value overrides), key = default. The teacher and eval sections "
        "are `cotspec sample` / `cotspec eval` settings for `cotspec run`; train does not read them.\n\n"
        + "\n\n".join(rows)
    )


@app.command("train", epilog=_epilog(), rich_help_panel=None)
def train_command(
    overrides: Annotated[
        Optional[list[str]],
        typer.Argument(help="Config overrides as key=value, e.g. train.lr=1e-4 data.max_length=512 (keys below).", show_default=False),
    ] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML config file (sections teacher, data, student, loss, lora, train, eval).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="A `cotspec build` output directory (sets data.path).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory: checkpoints, model/, config.yaml (sets out).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", metavar=" ", help="Print the resolved config as commented YAML and exit.")] = False,
) -> None:
    """Fine-tune a student on teacher chains (sample or distribution matching); re-running resumes."""
    resolved = load_config(config, overrides or (), flags={"out": (out, "--out"), "data.path": (data, "--data")})
    if print_config:
        typer.echo(to_yaml(resolved), nl=False)
        return
    from ..api import train

    try:
        summary = train(resolved)
    except ConfigError as err:  # a setting found wrong while running: named as the flag, else the key
        raise render(err, lambda key: FLAGS.get(key, key)) from None
    if summary is not None:  # the main process reports; the others of a multi-process run return None
        typer.echo(_summary_table(summary))


def _summary_table(summary: dict) -> str:
    def number(value: object, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    return "\n".join(
        [
            # Mean loss covers this invocation's steps even when none was logged (log_every > steps run).
            "| steps | mean loss | first logged | last logged | tokens/s | precision | processes |",
            "|---:|---:|---:|---:|---:|---|---:|",
            f"| {summary['steps']} | {number(summary['train_loss'], '.4f')} | {number(summary['first_loss'], '.4f')} "
            f"| {number(summary['last_loss'], '.4f')} | {number(summary['tokens_per_second'], ',.0f')} "
            f"| {summary['precision']} | {summary['processes']} |",
            "",
            f"model: {summary['model']}",
        ]
    )
