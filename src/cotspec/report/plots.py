"""The report's figures, drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no
global backend switch), each saved as one PNG.

Each function takes collected data (`collect.RunData` and friends) and a path, and returns the path, or
None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .collect import BASE, MODES, TEACHER, RunData, SamplingStats, task_label
from .tables import MODE_LABEL, Table1

DPI = 110
_TASK_COLORS = {
    "gsm8k-dev": "#1f77b4",
    "gsm8k": "#1f77b4",
    "multiarith": "#2ca02c",
    "asdiv": "#9467bd",
    "svamp": "#ff7f0e",
    "bbh": "#d62728",
}
_OTHER_COLORS = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_CRITERION_STYLE = {"in_distribution": ("#1f77b4", "v"), "ood": ("#ff7f0e", "^"), "mean": ("#2ca02c", "D")}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, facecolor="white")
    return path


def _legend_below(figure, axes) -> None:
    """One legend for all panels, under them (never over the data); entries of the same label once."""
    handles, labels = {}, []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in handles:
                handles[label] = handle
                labels.append(label)
    labels.sort(key=lambda label: " pick " in label)  # the data first, then the selection marks
    if labels:
        per_row = max(2, int(figure.get_figwidth() / 2.3))  # about 2.3 inches per entry: none cut off
        figure.legend([handles[label] for label in labels], labels, loc="outside lower center",
                      ncol=min(len(labels), per_row), fontsize=8, frameon=False)


def _color(task: str, others: dict[str, str]) -> str:
    if task in _TASK_COLORS:
        return _TASK_COLORS[task]
    return others.setdefault(task, _OTHER_COLORS[len(others) % len(_OTHER_COLORS)])


# --- the specialization trade-off --------------------------------------------------------------------


def tradeoff(run: RunData, path: Path) -> Path | None:
    """Dev accuracy per task (and BBH) against training step, one panel per prompting mode; the base at
    step 0, selected checkpoints as vertical lines, each selection criterion's pick marked on top."""
    series = _dev_series(run)
    if not series:
        return None
    panels = list(series)
    from matplotlib.ticker import MaxNLocator

    figure = _figure(5.2 * len(panels) + 0.6, 5.0)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    others: dict[str, str] = {}
    selected = run.selected_steps
    top = max(max(y + e for _, y, e in points) for lines in series.values() for points in lines.values())
    ymax = min(100.0, max(10.0, top * 1.25 + 2))
    for ax, panel in zip(axes, panels):
        for task, points in series[panel].items():
            points = sorted(points)
            xs, ys, errs = [p[0] for p in points], [p[1] for p in points], [p[2] for p in points]
            color = _color(task.removesuffix(" (test)"), others)
            dashed = task.endswith(" (test)")
            ax.errorbar(xs, ys, yerr=errs, color=color, marker="o", markersize=4, capsize=3, linewidth=1.6,
                        linestyle="--" if dashed else "-", label=_dev_label(task))
        for step in selected:
            ax.axvline(step, color="#444", linestyle=":", linewidth=1.2)
        if run.selection is not None:
            for offset, (criterion, step) in enumerate(run.selection.picked.items()):
                color, marker = _CRITERION_STYLE.get(criterion, ("#555", "s"))
                ax.plot([step], [ymax * (0.96 - 0.045 * offset)], marker=marker, color=color, linestyle="none",
                        markersize=7, label=f"{criterion.replace('_', '-')} pick (step {step})")
        ax.set_title(f"dev, {MODE_LABEL.get(panel, panel)}" if panel in MODE_LABEL else panel)
        ax.set_xlabel("training step (0 = base model)")
        ax.set_ylim(-0.03 * ymax, ymax)  # a line at 0% stays visible above the axis
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%) ± s.e.")
    _legend_below(figure, axes)
    title = f"Specialization trade-off: {run.name}"
    if selected:
        title += f" (dotted: selected step {', '.join(map(str, selected))})"
    figure.suptitle(title, fontsize=11)
    return _save(figure, path)


def _dev_label(task: str) -> str:
    if task.endswith(" (test)"):
        return task_label(task.removesuffix(" (test)")) + " (test)"
    if task in ("gsm8k-dev", "bbh") or task.startswith("dev "):
        return task_label(task)
    return f"{task_label(task)} (OOD dev slice)"


def _dev_series(run: RunData) -> dict[str, dict[str, list[tuple[int, float, float]]]]:
    """panel (mode) -> task -> [(step, accuracy %, stderr %)]."""
    series: dict[str, dict[str, list[tuple[int, float, float]]]] = {}
    for result in run.evals:
        if result.suite != "dev" or result.step is None:
            continue
        for task, score in result.scores.items():
            series.setdefault(result.mode, {}).setdefault(task, []).append(
                (result.step, 100 * score.accuracy, 100 * score.stderr)
            )
    if series:
        # BBH is part of the trade-off; when it was run only on the test sets, show those points too.
        for mode, lines in series.items():
            if "bbh" in lines:
                continue
            points = [
                (e.step, 100 * e.scores["bbh"].accuracy, 100 * e.scores["bbh"].stderr)
                for e in run.evals
                if e.suite == "test" and e.mode == mode and e.step is not None and "bbh" in e.scores
            ]
            if points:
                lines["bbh (test)"] = points
        return {mode: series[mode] for mode in MODES if mode in series}
    if run.selection is not None and run.selection.dev:
        lines: dict[str, list[tuple[int, float, float]]] = {}
        for step, tasks in run.selection.dev.items():
            for task, accuracy in tasks.items():
                lines.setdefault(task, []).append((step, 100 * accuracy, 0.0))
        return {"dev (selection.json)": lines}
    return {}


# --- Table 1 as bars ---------------------------------------------------------------------------------


def table1_bars(table: Table1, path: Path, title: str) -> Path | None:
    """Accuracy per Table-1 column, one bar per model, standard errors as error bars."""
    if not table.columns or not table.rows:
        return None
    import numpy as np

    n_cols, n_rows = len(table.columns), len(table.rows)
    figure = _figure(max(6.0, 1.05 * n_cols + 2.5), 4.6)
    ax = figure.subplots()
    width = 0.8 / n_rows
    x = np.arange(n_cols)
    palette = ["#7f7f7f", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf"]
    for index, row in enumerate(table.rows):
        values = [100 * row.cells[c].accuracy if c in row.cells else np.nan for c in table.columns]
        errors = [100 * row.cells[c].stderr if c in row.cells else 0 for c in table.columns]
        color = "#d62728" if row.model == TEACHER else palette[index % len(palette)]
        label = row.label.replace("`", "")
        ax.bar(x - 0.4 + width * (index + 0.5), values, width, yerr=errors, capsize=2, color=color, label=label)
    ax.set_xticks(x, [c.label.replace(" (", "\n(") for c in table.columns], fontsize=8)
    ax.set_ylabel("accuracy (%) ± s.e.")
    ax.set_ylim(0, 100)
    ax.grid(True, axis="y", alpha=0.3)
    _legend_below(figure, [ax])
    ax.set_title(title, fontsize=11)
    return _save(figure, path)


# --- training loss -----------------------------------------------------------------------------------


def loss_curves(runs: Sequence[RunData], path: Path) -> Path | None:
    curves = [run for run in runs if run.loss is not None and run.loss.steps]
    if not curves:
        return None
    figure = _figure(6.4, 4.0)
    ax = figure.subplots()
    for run in curves:
        assert run.loss is not None
        ax.plot(run.loss.steps, run.loss.losses, marker="o" if len(run.loss.steps) < 30 else None,
                markersize=3, linewidth=1.5, label=run.name)
    for run in curves:
        for step in run.selected_steps:
            ax.axvline(step, color="#444", linestyle=":", linewidth=1)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.grid(True, alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.set_title("Training loss" + (" (dotted: selected checkpoints)" if any(r.selected_steps for r in curves) else ""), fontsize=11)
    return _save(figure, path)


# --- scaling -----------------------------------------------------------------------------------------


def scaling(runs: Sequence[RunData], tables: Sequence[Table1 | None], path: Path) -> Path | None:
    """Test accuracy against student parameters (log x), one panel per mode, a line per task: solid for
    the specialized model (the first selected one), dashed for the base."""
    points: dict[str, dict[tuple[str, str], list[tuple[int, float, float]]]] = {}
    for run, table in zip(runs, tables):
        if table is None or run.parameters is None:
            continue
        specialized = [r for r in table.rows if r.model not in (BASE, TEACHER)]
        chosen = next((r for r in specialized if run.selection and int(r.model[5:]) in run.selection.selected), None)
        chosen = chosen or (specialized[-1] if specialized else None)
        for kind, row in (("specialized", chosen), ("base", table.base())):
            if row is None:
                continue
            for column, score in row.cells.items():
                points.setdefault(column.mode, {}).setdefault((column.task, kind), []).append(
                    (run.parameters, 100 * score.accuracy, 100 * score.stderr)
                )
    sizes = {run.parameters for run in runs if run.parameters is not None}
    if len(sizes) < 1 or not points or len(runs) < 2:
        return None
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    panels = [m for m in MODES if m in points]
    figure = _figure(5.2 * len(panels) + 0.6, 4.8)
    axes = figure.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    others: dict[str, str] = {}
    ticks = sorted(sizes)
    for ax, mode in zip(axes, panels):
        for (task, kind), pts in sorted(points[mode].items(), key=lambda item: (_task_rank(item[0][0]), item[0][1])):
            pts = sorted(pts)
            ax.errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o", markersize=4,
                        capsize=3, color=_color(task, others), linestyle="-" if kind == "specialized" else "--",
                        alpha=1.0 if kind == "specialized" else 0.55,
                        label=task_label(task) if kind == "specialized" else "_nolegend_")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _short_count(int(value))))
        low, high = ticks[0], ticks[-1]
        ax.set_xlim(low / 1.6, high * 1.6)
        ax.set_xlabel("student parameters (log scale)")
        ax.set_title(f"test, {MODE_LABEL.get(mode, mode)}")
        ax.set_ylim(0, 100)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%) ± s.e.")
    axes[0].plot([], [], color="#444", linestyle="-", label="specialized (solid)")
    axes[0].plot([], [], color="#444", linestyle="--", alpha=0.55, label="base (dashed)")
    _legend_below(figure, axes)
    figure.suptitle("Scaling: test accuracy against student size", fontsize=11)
    return _save(figure, path)


def _task_rank(task: str) -> int:
    order = ["gsm8k", "multiarith", "asdiv", "svamp", "bbh"]
    return order.index(task) if task in order else len(order)


def _short_count(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            value = count / size
            return f"{value:.0f}{unit}" if value >= 10 or value == int(value) else f"{value:.1f}{unit}"
    return str(count)


# --- sampling ----------------------------------------------------------------------------------------


def yield_histogram(stats: SamplingStats, path: Path) -> Path | None:
    if not stats.correct_per_question:
        return None
    figure = _figure(6.0, 3.6)
    ax = figure.subplots()
    from matplotlib.ticker import MaxNLocator

    top = max(stats.chains_max, max(stats.correct_per_question))
    xs = list(range(top + 1))
    ax.bar(xs, [stats.correct_per_question.get(x, 0) for x in xs], color="#1f77b4", width=0.8)
    ax.set_xlabel("correct chains of a question")
    ax.set_ylabel("questions")
    ax.grid(True, axis="y", alpha=0.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(
        f"Teacher yield: {stats.questions} questions, {stats.chains_per_question:.1f} chains each, "
        f"{100 * stats.share_with_correct:.0f}% with a correct one",
        fontsize=10,
    )
    return _save(figure, path)
