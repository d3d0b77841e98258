"""`cotspec report`: report.md, a self-contained report.html and PNGs from one or several run directories.

    cotspec report runs/demo-cpu                          # -> runs/demo-cpu/report/
    cotspec report runs/flan-t5-base runs/flan-t5-large --out runs/scaling-report

With one run that has a selected model (`<run>/model/`), its model card (`model/README.md`) is written too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import app


@app.command("report")
def report_command(
    run_dirs: Annotated[
        list[Path],
        typer.Argument(metavar="RUN_DIR", help="Run directories written by `cotspec run` (several: a joint report with a scaling plot)."),
    ],
    out: Annotated[
        Optional[Path],
        typer.Option("--out", metavar="DIR", help="Report directory (default: <RUN_DIR>/report; required with several runs)."),
    ] = None,
    model_card: Annotated[
        bool,
        typer.Option("--model-card/--no-model-card", help="Also write <RUN_DIR>/model/README.md when the run has a selected model."),
    ] = True,
) -> None:
    """Write the report of a run: Table 1, the specialization trade-off, loss, sampling statistics, versions."""
    from ..errors import ConfigError
    from ..report import write_model_card, write_report

    try:
        html = write_report(run_dirs, out)
    except ConfigError as err:
        if err.field == "out":
            raise ConfigError("--out", err.message) from None
        raise
    typer.echo(f"wrote {html.with_name('report.md')} and {html}")
    if model_card and len(run_dirs) == 1 and (run_dirs[0] / "model" / "config.json").is_file():
        card = write_model_card(run_dirs[0])
        typer.echo(f"wrote model card {card}")
