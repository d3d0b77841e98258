"""`cotspec run CONFIG.yaml`: the whole pipeline over one run directory; re-running resumes.

    cotspec run configs/demo-cpu.yaml                       # into runs/demo-cpu
    cotspec run configs/demo-cpu.yaml --dry-run             # the plan, nothing run
    cotspec run cfg.yaml --out runs/x train.max_steps=40    # key=value overrides
    cotspec run cfg.yaml --force-stage train                # redo train and what depends on it

Its settings are `cotspec.pipeline.config.PipelineConfig` (--help lists every key with its default).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import CotspecError
from .app import app


def _epilog() -> str:
    from rich.markup import escape

    from ..pipeline.config import help_lines

    rows = [f"[bold]{key}[/bold] = {escape(default)}  {escape(doc)}" for key, default, doc in help_lines()]
    return "Config keys (YAML sections or key=value overrides), key = default.\n\n" + "\n\n".join(rows)


@app.command("run", epilog=_epilog(), rich_help_panel=None)
def run_command(
    config: Annotated[Path, typer.Argument(help="YAML config file (sections teacher, data, student, loss, lora, train, select, eval, report, resources).", show_default=False)],
    overrides: Annotated[
        Optional[list[str]],
        typer.Argument(help="Config overrides as key=value, e.g. train.max_steps=40 eval.limit=20.", show_default=False),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default runs/<config file name>).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", metavar=" ", help="Print the plan (stages, sizes, estimates) and exit.")] = False,
    force_stage: Annotated[
        Optional[list[str]], typer.Option("--force-stage", help="Redo this stage and the stages after it that use it (repeatable).")
    ] = None,
    until: Annotated[
        Optional[str], typer.Option("--until", metavar="STAGE", help="Stop after this stage; a later run without it goes on from there.")
    ] = None,
    print_config: Annotated[bool, typer.Option("--print-config", metavar=" ", help="Print the resolved config as commented YAML and exit.")] = False,
) -> None:
    """Sample, build, train, select and evaluate: a specialized student from a teacher, in one run directory."""
    from ..pipeline import run
    from ..pipeline.config import load_pipeline_config, to_yaml

    if print_config:
        typer.echo(to_yaml(load_pipeline_config(config, overrides or ())), nl=False)
        return
    result = run(config, out=out, overrides=overrides or (), dry_run=dry_run, force_stages=force_stage or (), until=until)
    if not dry_run:
        typer.echo(f"run directory: {result['run_dir']}")
        for stage, summary in result["summaries"].items():
            typer.echo(f"{stage}: {summary}")
        from ..report.tables import before_after_markdown

        try:
            table = before_after_markdown(Path(result["run_dir"]))
        except CotspecError as err:  # an evaluation this run has not finished (--until, or interrupted)
            table = None
            typer.echo(f"\nno before/after table yet: {err}")
        if table is not None:
            typer.echo("\n" + table)
        report = Path(result["run_dir"]) / "report" / "report.html"
        if report.is_file():
            typer.echo(f"\nreport: {report}")
