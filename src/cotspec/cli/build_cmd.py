"""`cotspec build`: the distillation training set, in the paper's four formats, from teacher chains or gold.

    cotspec build --gold --limit 20 --data-dir ../shared/data --out runs/data-gold
    cotspec build --store runs/teacher.db --max-per-question 8 --weights 1,2,1,2 --out runs/data

Its flags are the fields of `cotspec.formats.config.BuildConfig` (`cotspec.cli.options`).
"""

from __future__ import annotations

import typer

from ..formats.config import BuildConfig
from .app import app
from .options import config_command


@config_command(app, "build", BuildConfig)
def build_command(config: BuildConfig) -> None:
    """Build the training set (Arrow + build.json) from a sample store and/or GSM8K's own solutions."""
    from ..api import build
    from ..formats.build import MANIFEST, load_training_data

    build(config)
    _, manifest = load_training_data(config.out)
    typer.echo(_summary_table(manifest))
    typer.echo(
        f"\nwrote {manifest['rows']} rows to {config.out} (content sha256 {manifest['content_sha256'][:16]}), "
        f"manifest {config.out / MANIFEST}"
    )


def _summary_table(manifest: dict) -> str:
    lines = [
        f"{manifest['questions']} questions, {manifest['chains']} chains, "
        f"{manifest['dev_questions_excluded']} gsm8k-dev questions left out",
        "",
        "| format | weight | rows | share | with logprobs |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in manifest["formats"].items():
        weight = "-" if row["weight"] is None else f"{row['weight']:g}"
        lines.append(f"| {name} | {weight} | {row['rows']} | {100 * row['share']:.1f}% | {row['rows_with_logprobs']} |")
    return "\n".join(lines)
