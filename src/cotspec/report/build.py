"""`write_report`: one or several run directories -> report.md, a self-contained report.html, and PNGs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..outputs import OutputLayout, check_can_write_in, writing_output
from . import plots
from .collect import RunData, read_run
from .document import Bullets, Code, Document, Image, Paragraph, Section, Table, to_html, to_markdown
from .tables import Table1, dev_block, key_value_block, pct, selection_block, table1, table1_block, table1_notes

REPORT_DIR = "report"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
REPORT_OUTPUT = OutputLayout(
    "cotspec report",
    REPORT_MD,
    frozenset({REPORT_MD, REPORT_HTML}),
    frozenset({REPORT_MD + ".tmp", REPORT_HTML + ".tmp"}),
)
"""What a report directory holds besides its PNGs (checked by `_check_out`)."""


def write_report(run_dirs: Path | Sequence[Path], out: Path | None = None) -> Path:
    """Write the report of one run (default `<run>/report/`) or of several (then `out` is required).

    Returns the path of report.html. Parts a run does not have yet (no teacher, no selection, one mode
    only) are left out with a line saying so; a missing or corrupt summary file is a one-line CotspecError.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(d) for d in run_dirs]
    if not dirs:
        raise ConfigError("run_dirs", "no run directory given")
    if out is None:
        if len(dirs) > 1:
            raise ConfigError("out", f"is required with {len(dirs)} run directories (where should their joint report go?)")
        out = dirs[0] / REPORT_DIR
    out = Path(out)
    runs = [read_run(d) for d in dirs]
    names = [r.name for r in runs]
    if len(set(names)) < len(names):  # two runs/<x> of different parents: qualify by the parent
        for run in runs:
            run.name = f"{run.path.resolve().parent.name}/{run.name}"
    _check_out(out)
    with writing_output(out):
        out.mkdir(parents=True, exist_ok=True)
        doc = _document(runs, out)
        _write(out / REPORT_MD, to_markdown(doc, out))
        _write(out / REPORT_HTML, to_html(doc))
    return out / REPORT_HTML


def _check_out(out: Path) -> None:
    """Refuse, before anything is written, an `out` that is a file, cannot be written, or holds what a
    report does not write (report.md/html and PNGs): a report replaces its PNGs, nothing else."""
    if out.exists() and not out.is_dir():
        raise ConfigError("out", f"{out} is a file; give a directory for the report")
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_OUTPUT.entries | REPORT_OUTPUT.scratch
                         and not (p.is_file() and p.suffix == ".png"))
        if foreign:
            raise ConfigError("out", f"{out} holds {foreign[0]!r}, which `cotspec report` did not write; choose another directory")
    check_can_write_in(out, "out", out)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _document(runs: list[RunData], out: Path) -> Document:
    single = len(runs) == 1
    title = f"cotspec report: {runs[0].name}" if single else f"cotspec report: {len(runs)} runs"
    doc = Document(title)
    tables: list[Table1 | None] = [table1(run) for run in runs]
    for png in out.glob("*.png"):
        png.unlink()  # figures of an earlier report that this one may not draw again

    overview = Section("Overview", anchor="overview")
    overview.add(Table(
        ["run", "student", "teacher", "parameters", "selected step(s)", "directory"],
        [[r.name, f"`{r.student or '?'}`", f"`{r.teacher or '–'}`", _params(r.parameters),
          ", ".join(map(str, r.selected_steps)) or "–", f"`{r.path}`"] for r in runs],
        align=["l", "l", "l", "r", "r", "l"],
    ))
    doc.sections.append(overview)

    if not single:
        scaling = Section("Scaling", anchor="scaling")
        png = plots.scaling(runs, tables, out / "scaling.png")
        if png:
            scaling.add(Image(png, "Test accuracy against student parameters (log x): specialized (solid) and base (dashed)"))
        else:
            scaling.add(Paragraph("Skipped: the scaling plot needs test results and a parameter count for at least two runs."))
        doc.sections.append(scaling)

    for run, table in zip(runs, tables):
        prefix = "" if single else f"{run.name}: "
        slug = "" if single else _slug(run.name) + "-"
        doc.sections += _run_sections(run, table, out, prefix, slug)

    loss = Section("Training loss", anchor="loss")
    png = plots.loss_curves(runs, out / "loss.png")
    if png:
        loss.add(Image(png, "Training loss against optimizer step"))
        for run in runs:
            if run.loss is not None:
                loss.add(Paragraph(f"{run.name}: {len(run.loss.steps)} logged steps, loss {run.loss.losses[0]:.3f} → "
                                   f"{run.loss.losses[-1]:.3f} (from `{run.loss.source}`)."))
    else:
        loss.add(Paragraph("Skipped: no training loss recorded (no checkpoint trainer_state.json and no train_summary.json)."))
    doc.sections.append(loss)

    doc.sections += _provenance_sections(runs)
    skipped = [f"{run.name}: {line}" if not single else line for run in runs for line in run.skipped]
    if skipped:
        doc.sections.append(Section("Skipped", anchor="skipped").add(Bullets(skipped)))
    return doc


def _run_sections(run: RunData, table: Table1 | None, out: Path, prefix: str, slug: str) -> list[Section]:
    sections = []
    t1 = Section(f"{prefix}Table 1: test accuracy", anchor=f"{slug}table1")
    if table is None:
        t1.add(Paragraph("Skipped: no test-set evaluation yet (no eval/<model>/test-<mode>/summary.json)."))
    else:
        t1.add(table1_block(table))
        t1.add(Bullets(table1_notes(run, table)))
        png = plots.table1_bars(table, out / f"{slug}table1.png", f"Test accuracy: {run.name}")
        if png:
            t1.add(Image(png, "Test accuracy per benchmark and prompting mode, with standard errors"))
    sections.append(t1)

    trade = Section(f"{prefix}Specialization trade-off", anchor=f"{slug}tradeoff")
    png = plots.tradeoff(run, out / f"{slug}tradeoff.png")
    if png:
        trade.add(Image(png, "Dev accuracy against training step (base = step 0); selected checkpoints dotted"))
    else:
        trade.add(Paragraph("Skipped: no dev-set evaluations (eval/<model>/dev-<mode>) and no selection.json dev numbers."))
    dev = dev_block(run)
    if dev is not None:
        trade.add(dev)
    picks = selection_block(run)
    if picks is not None:
        trade.add(Paragraph(f"Checkpoint selection (criterion used: `{run.selection.criterion}`); "  # type: ignore[union-attr]
                            "what each criterion would have picked:"))
        trade.add(picks)
    elif run.selection is None:
        trade.add(Paragraph("No checkpoint selection yet (selection.json missing)."))
    sections.append(trade)

    sampling = Section(f"{prefix}Teacher sampling and alignment", anchor=f"{slug}sampling")
    s = run.sampling
    if s is None:
        sampling.add(Paragraph(f"Skipped: no teacher sample store (`{run.path / 'teacher' / 'samples.db'}`); "
                               "the run trained without teacher chains, or sampling has not run."))
    else:
        sampling.add(key_value_block([
            ("teacher", f"`{s.teacher or run.teacher or '?'}`"),
            ("questions", s.questions),
            ("chains per question", f"{s.chains_per_question:.2f} (min {s.chains_min}, max {s.chains_max}; {s.samples} in all)"),
            ("correct chains (yield)", f"{s.correct} of {s.samples} = {pct(s.yield_rate)}%; {s.yield_mean:.2f} per question"),
            ("distinct correct chains", s.distinct_correct),
            ("questions with a correct chain", f"{pct(s.share_with_correct)}%"),
            ("pass@1", f"{pct(s.pass_at_1)}%"),
            (f"pass@{s.k}", f"{pct(s.pass_at_k)}% (over the {s.questions_at_k} questions with ≥ {s.k} chains)"),
            ("teacher majority-vote accuracy", f"{pct(s.majority_vote_accuracy)}%"),
            ("generated tokens", f"{s.generated_tokens:,}"),
            ("chains without log-probs", s.without_logprobs),
        ], ("statistic", "value")))
        png = plots.yield_histogram(s, out / f"{slug}yield.png")
        if png:
            sampling.add(Image(png, "Correct chains per question (what the build can keep)"))
    c = run.coverage
    if c is None:
        sampling.add(Paragraph("Alignment coverage: not recorded (train/train_summary.json has no data.soft_coverage)."))
    else:
        items = []
        if c.soft_coverage is not None:
            items.append(f"teacher top-{c.top_k} carried to the student's tokens on **{pct(c.soft_coverage)}%** of the "
                         f"target tokens of rows with teacher log-probs ({c.soft_target_tokens:,} of "
                         f"{c.target_tokens_with_teacher_rows:,}); the rest train with cross-entropy")
        else:
            items.append("alignment coverage: not recorded (training has not run, or its summary predates the field)")
        if c.rows_with_logprobs is not None:
            items.append(f"training rows with teacher log-probs: {c.rows_with_logprobs} of {c.rows}")
        items.append(f"source: `{c.source}`")
        sampling.add(Bullets(items))
    if run.build:
        b = run.build
        sampling.add(Paragraph(
            f"Training data: {b.get('rows')} rows, {b.get('questions')} questions, {b.get('chains')} chains; "
            f"content sha256 `{str(b.get('content_sha256'))[:16]}…`."
        ))
    sections.append(sampling)
    return sections


def _provenance_sections(runs: list[RunData]) -> list[Section]:
    sections = []
    for run in runs:
        prefix = "" if len(runs) == 1 else f"{run.name}: "
        slug = "" if len(runs) == 1 else _slug(run.name) + "-"
        section = Section(f"{prefix}Versions, stages and config", anchor=f"{slug}config")
        if run.versions:
            section.add(key_value_block(run.versions.items(), ("package", "version")))
        else:
            section.add(Paragraph("Versions: not recorded (versions.json missing)."))
        if run.state:
            section.add(_stages_table(run.state))
        if run.config_text:
            section.add(Code(run.config_text, "yaml"))
        else:
            section.add(Paragraph("Config: not found (config.yaml missing)."))
        sections.append(section)
    return sections


def _stages_table(state: dict) -> Table:
    stages = state.get("stages", state) if isinstance(state, dict) else {}
    rows = []
    for name, info in stages.items():
        if not isinstance(info, dict):
            continue
        seconds = info.get("seconds")
        summary = info.get("summary")
        if isinstance(summary, (dict, list)):
            summary = json.dumps(summary, ensure_ascii=False)
            summary = summary if len(summary) <= 120 else summary[:117] + "..."
        rows.append([str(name), str(info.get("status", "")), "" if seconds is None else f"{float(seconds):.1f}",
                     str(info.get("pieces", 1)), str(info.get("finished_at") or ""), str(summary or "")])
    # seconds: wall time over all the pieces (sessions) a stage ran in.
    return Table(["stage", "status", "seconds", "pieces", "finished", "summary"], rows, align=["l", "l", "r", "r", "l", "l"])


def _params(count: int | None) -> str:
    if count is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit}"
    return str(count)


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in name).strip("-") or "run"
