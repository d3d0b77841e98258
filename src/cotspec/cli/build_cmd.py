"""`cotspec build`: the distillation training set, in the paper's four formats, from teacher chains or gold.

    cotspec build --gold --limit 20 --data-dir ../shared/data --out runs/data-gold
    cotspec build --store runs/teacher.db --max-per-question 8 --weights 1,2,1,2 --out runs/data
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..fieldhelp import field_docs
from ..formats.config import BuildConfig, parse_formats, parse_weights
from ..formats.templates import FORMATS
from .main import app

_doc = field_docs(BuildConfig)


def _opt(name: str, *flags: str, **kwargs) -> typer.Option:  # type: ignore[valid-type]
    return typer.Option(*flags, help=_doc[name], **kwargs)


@app.command("build")
def build_command(
    out: Annotated[Path, _opt("out", "--out")],
    store: Annotated[Optional[Path], _opt("store", "--store")] = None,
    gold: Annotated[bool, _opt("gold", "--gold")] = False,
    formats: Annotated[str, _opt("formats", "--formats")] = ",".join(FORMATS),
    weights: Annotated[Optional[str], _opt("weights", "--weights")] = None,
    shots: Annotated[int, _opt("shots", "--shots")] = 4,
    seed: Annotated[int, _opt("seed", "--seed")] = 0,
    limit: Annotated[Optional[int], _opt("limit", "--limit")] = None,
    max_per_question: Annotated[Optional[int], _opt("max_per_question", "--max-per-question")] = None,
    data_dir: Annotated[Optional[Path], _opt("data_dir", "--data-dir")] = None,
) -> None:
    """Build the training set (Arrow + build.json) from a sample store and/or GSM8K's own solutions."""
    from ..formats.build import MANIFEST, build_training_data, load_training_data

    config = BuildConfig(
        out=out,
        store=store,
        gold=gold,
        formats=parse_formats(formats),
        weights=None if weights is None else parse_weights(weights),
        shots=shots,
        seed=seed,
        limit=limit,
        max_per_question=max_per_question,
        data_dir=data_dir,
    )
    build_training_data(config)
    _, manifest = load_training_data(out)
    typer.echo(_summary_table(manifest))
    typer.echo(f"\nwrote {manifest['rows']} rows to {out} (content sha256 {manifest['content_sha256'][:16]}), manifest {out / MANIFEST}")


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
