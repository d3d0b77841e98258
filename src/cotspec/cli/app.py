"""The typer app every command registers on; `cotspec.cli.main` runs it.

Kept apart from `main` so that the command modules import the app, never the entry point.
"""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(
    name="cotspec",
    help="Specialize small language models for multi-step reasoning by distilling chain-of-thought.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _common_options(
    verbose: Annotated[
        bool, typer.Option("-v", "--verbose", metavar=" ", help="Show the libraries' INFO messages (downloads, dequantization, retries).")
    ] = False,
) -> None:
    """Specialize small language models for multi-step reasoning by distilling chain-of-thought."""
    from ..progress import configure_logging

    configure_logging(verbose)
