"""The report's tables, as plain data (`document.Table`) built from a `RunData`.

Table 1 has the shape of the paper's Table 1: one row per model (the base, the specialized model(s),
a teacher evaluated the same way), one column per (mode, task) with in-context (few-shot) columns first,
then zero-shot, BBH last in each mode. A cell reads ``45.2 ± 3.5 (90/200) +12.1``: accuracy in percent,
its standard error sqrt(p(1-p)/n) in points (as lm-eval reports it), correct/n, and the change against
the base model in points.
"""

from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass
from typing import Iterable

from .collect import BASE, MODES, TABLE1_TASKS, TEACHER, EvalResult, RunData, Score, task_label
from .document import Table

MODE_LABEL = {"few-shot": "in-context", "zero-shot": "zero-shot"}


@dataclass(frozen=True)
class Column:
    mode: str
    task: str

    @property
    def label(self) -> str:
        return f"{task_label(self.task)} ({MODE_LABEL.get(self.mode, self.mode)})"


@dataclass(frozen=True)
class Table1Row:
    label: str
    model: str
    """base, step-<N> or teacher."""
    cells: dict[Column, Score]


@dataclass(frozen=True)
class Table1:
    columns: list[Column]
    rows: list[Table1Row]

    def base(self) -> Table1Row | None:
        return next((r for r in self.rows if r.model == BASE), None)


def table1(run: RunData) -> Table1 | None:
    """Table 1 from the run's test evaluations; None when nothing was evaluated on the test suite."""
    tests = [e for e in run.evals if e.suite == "test"]
    if not tests:
        return None
    columns = []
    for mode in MODES:
        in_mode = [e for e in tests if e.mode == mode]
        found: set[str] = set().union(*(e.scores for e in in_mode)) if in_mode else set()
        extra = sorted(t for t in found if t not in TABLE1_TASKS and t != "bbh")
        ordered = [t for t in TABLE1_TASKS if t in found and t != "bbh"] + extra + (["bbh"] if "bbh" in found else [])
        columns += [Column(mode, t) for t in ordered]
    rows = []
    for model in run.models("test"):
        cells = {}
        refs = []
        for result in (e for e in tests if e.model == model):
            refs.append(result.model_ref)
            for column in columns:
                if column.mode == result.mode and column.task in result.scores:
                    cells[column] = result.scores[column.task]
        rows.append(Table1Row(_row_label(run, model, refs), model, cells))
    return Table1(columns, rows)


def _row_label(run: RunData, model: str, refs: list[str]) -> str:
    ref = refs[0] if refs else model
    if model == BASE:
        return f"base: `{run.student or ref}`"
    if model == TEACHER:
        return f"teacher: `{run.teacher or ref}`"
    step = model.removeprefix("step-")
    selected = run.selection is not None and int(step) in run.selection.selected
    return f"specialized, step {step}" + (" (selected)" if selected else "")


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def format_cell(score: Score | None, base: Score | None, is_base: bool) -> str:
    """``45.2 ± 3.5 (90/200) +12.1``; the change is left out in the base row and where the base has no score."""
    if score is None:
        return "–"
    text = f"{pct(score.accuracy)} ± {pct(score.stderr)} ({score.correct}/{score.n})"
    if not is_base and base is not None:
        text += f" {100 * (score.accuracy - base.accuracy):+.1f}"
    return text


CELL = re.compile(r"^(?P<acc>\d+\.\d) ± (?P<se>\d+\.\d) \((?P<correct>\d+)/(?P<n>\d+)\)(?: (?P<delta>[+-]\d+\.\d))?$")
"""What `format_cell` writes (tests parse the report back with it)."""


def table1_block(table: Table1) -> Table:
    base = table.base()
    rows = []
    for row in table.rows:
        cells = [
            format_cell(row.cells.get(c), base.cells.get(c) if base else None, row.model == BASE)
            for c in table.columns
        ]
        rows.append([row.label, *cells])
    return Table(["model", *(c.label for c in table.columns)], rows)


def table1_notes(run: RunData, table: Table1) -> list[str]:
    notes = [
        "Cells: accuracy % ± standard error sqrt(p(1-p)/n) in points (correct/n), then the change against "
        "the base model in points. In-context = few-shot prompts (the paper's in-context columns)."
    ]
    if any(c.task == "bbh" for c in table.columns):
        macro = [
            f"{row.label}: {pct(s.macro_accuracy)}% over {s.subtasks} tasks ({MODE_LABEL.get(c.mode, c.mode)})"
            for row in table.rows
            for c, s in row.cells.items()
            if c.task == "bbh" and s.macro_accuracy is not None
        ]
        note = "BBH is the accuracy over all its questions (micro average)"
        notes.append(note + (f"; macro averages: {'; '.join(macro)}." if macro else "."))
    if run.selection is not None:
        for task, ids in sorted(run.selection.excluded_from_test.items()):
            if ids:
                notes.append(
                    f"{task_label(task)}: the test numbers exclude the {len(ids)} questions of the out-of-distribution "
                    "dev slice used for checkpoint selection."
                )
    missing_modes = [MODE_LABEL[m] for m in MODES if m not in {c.mode for c in table.columns}]
    if missing_modes:
        notes.append(f"Not evaluated on the test sets: {', '.join(missing_modes)} (no columns).")
    if not any(r.model == TEACHER for r in table.rows):
        notes.append("No teacher was evaluated the same way (no eval/teacher/test-*), so there is no teacher row.")
    if not any(r.model not in (BASE, TEACHER) for r in table.rows):
        notes.append("No specialized checkpoint was evaluated on the test sets yet.")
    if not any(r.model == BASE for r in table.rows):
        notes.append("The base model was not evaluated on the test sets, so there is no change column.")
    return notes


def dev_block(run: RunData) -> Table | None:
    """Dev accuracy of every evaluated checkpoint, per (mode, task): the numbers behind the trade-off plot."""
    devs = [e for e in run.evals if e.suite == "dev"]
    if not devs:
        return None
    columns = []
    for mode in MODES:
        found: set[str] = set().union(*(e.scores for e in devs if e.mode == mode)) if any(e.mode == mode for e in devs) else set()
        columns += [Column(mode, t) for t in sorted(found, key=_task_order)]
    rows = []
    selected = set(run.selected_steps)
    for model in run.models("dev"):
        results = {e.mode: e for e in devs if e.model == model}
        step = next(iter(results.values())).step
        label = {BASE: "base (step 0)", TEACHER: "teacher"}.get(model, f"step {step}" + (" (selected)" if step in selected else ""))
        rows.append([label, *(_dev_cell(results.get(c.mode), c.task) for c in columns)])
    return Table(["model", *(c.label for c in columns)], rows)


def _dev_cell(result: EvalResult | None, task: str) -> str:
    if result is None or task not in result.scores:
        return "–"
    s = result.scores[task]
    return f"{pct(s.accuracy)} ± {pct(s.stderr)} (n={s.n})"


def _task_order(task: str) -> tuple[int, str]:
    order = ["gsm8k-dev", "gsm8k", "multiarith", "asdiv", "svamp"]
    if task == "bbh":
        return (len(order) + 1, task)
    return (order.index(task), task) if task in order else (len(order), task)


def selection_block(run: RunData) -> Table | None:
    if run.selection is None or not run.selection.picked:
        return None
    rows = [
        [crit + (" (used)" if crit == run.selection.criterion else ""), f"step {step}"]
        for crit, step in run.selection.picked.items()
    ]
    return Table(["criterion", "would pick"], rows)


def key_value_block(pairs: Iterable[tuple[str, object]], header: tuple[str, str] = ("", "")) -> Table:
    return Table(list(header), [[k, str(v)] for k, v in pairs], align=["l", "l"])


def before_after_markdown(run_dir: Path) -> str | None:
    """Table 1 of `run_dir` as Markdown, for the end of `cotspec run` (None before any test evaluation)."""
    from .collect import read_run
    from .document import Document, Section, to_markdown

    table = table1(read_run(Path(run_dir)))
    if table is None:
        return None
    text = to_markdown(Document("", [Section("", [table1_block(table)])]), Path(run_dir))
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))  # the table alone
