"""Progress of every long loop (sample, eval, build, train) and the library's log messages.

`make_progress` is the one helper: on a terminal it is a rich bar (description, bar, done/total,
elapsed, ETA and the caller's columns); anywhere else (a log file, a pipe, CI, a notebook without
ipywidgets) it prints plain lines to stderr with the same numbers, rate and ETA, one every
`PLAIN_INTERVAL_S` seconds or every `PLAIN_EVERY_FRACTION` of the total, whichever comes first, plus one
when a task completes::

    eval smollm2-135m-instruct: 40/200 (20%) 3.1/s elapsed 0:00:13 eta 0:00:52 | 412 tok/s

``COTSPEC_PROGRESS`` overrides the choice: ``rich``, ``plain`` or ``off``.

`configure_logging(verbose)` is what a front end calls once: warnings of cotspec always reach stderr;
verbose adds the INFO messages of cotspec and of the libraries under it (transformers, datasets,
huggingface_hub, httpx: downloads, dequantization, retries).

Nothing here imports torch, transformers or datasets until a function that needs them runs.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PROGRESS_ENV = "COTSPEC_PROGRESS"
"""Environment variable forcing the progress display: ``rich``, ``plain`` or ``off`` (default: auto)."""
PLAIN_INTERVAL_S = 10.0
"""Plain mode: at most this many seconds between two lines of a task that advances."""
PLAIN_EVERY_FRACTION = 0.05
"""Plain mode: a line whenever the task has advanced by this fraction of its total since the last one..."""
PLAIN_MIN_GAP_S = 1.0
"""...but never two lines of a task within this many seconds (except the one that says it is done)."""


def progress_mode() -> str:
    """``rich`` on a terminal (or in a notebook that can show widgets), else ``plain``; ``off`` on request."""
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in ("rich", "plain", "off"):
        return forced
    if sys.stderr.isatty():
        return "rich"
    if _in_notebook_with_widgets():
        return "rich"
    return "plain"


def _in_notebook_with_widgets() -> bool:
    """Rich draws live bars in Jupyter only through ipywidgets; without them plain lines show instead."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return Console(stderr=True).is_jupyter


def make_progress(*extra_columns: TextColumn) -> Progress | PlainProgress:
    """The progress display of one long loop, for the place it runs in (see the module docstring).

    Use it like `rich.progress.Progress` (the subset every loop here uses): ``with progress:``,
    ``add_task(description, total=..., completed=..., **fields)``, ``update(task, advance=...,
    completed=..., **fields)``, ``advance(task)``. Extra columns read task fields, e.g.
    ``TextColumn("{task.fields[tok_s]:.0f} tok/s")``; plain lines show them too.
    """
    mode = progress_mode()
    if mode == "rich":
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            *extra_columns,
            console=Console(stderr=True),
        )
    return PlainProgress(*extra_columns, enabled=mode == "plain")


# --- plain lines --------------------------------------------------------------------------------------


@dataclass
class _PlainTask:
    """What `PlainProgress` knows of one task; `fields` and `description` are read by the columns."""

    id: int
    description: str
    total: float | None
    completed: float
    fields: dict[str, Any]
    started: float
    start_completed: float
    last_line_at: float
    last_line_completed: float
    finished_line: bool = False


class PlainProgress:
    """`rich.progress.Progress`'s interface, drawn as periodic plain lines on stderr (see the module).

    `disable` is False: the lines are the display (callers that print their own lines when the bar is
    disabled leave that to this class).
    """

    disable = False

    def __init__(
        self,
        *extra_columns: TextColumn,
        enabled: bool = True,
        interval_s: float = PLAIN_INTERVAL_S,
        every_fraction: float = PLAIN_EVERY_FRACTION,
        min_gap_s: float = PLAIN_MIN_GAP_S,
        clock: Any = time.monotonic,
    ):
        self._columns = extra_columns
        self._enabled = enabled
        self._interval_s = interval_s
        self._every_fraction = every_fraction
        self._min_gap_s = min_gap_s
        self._clock = clock
        self._tasks: dict[int, _PlainTask] = {}

    # The context-manager and start/stop of rich's Progress.
    def __enter__(self) -> PlainProgress:
        self.start()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()

    def start(self) -> None:
        pass

    def stop(self) -> None:
        """Say where each task ended, unless its last line already did."""
        for task in self._tasks.values():
            if not task.finished_line and task.completed > task.last_line_completed:
                self._emit(task, self._clock())

    def add_task(self, description: str, total: float | None = 100.0, completed: float = 0, **fields: Any) -> int:
        now = self._clock()
        task_id = len(self._tasks)
        self._tasks[task_id] = _PlainTask(
            task_id, description, total, completed, dict(fields), now, completed, now, completed
        )
        return task_id

    def update(
        self,
        task_id: int,
        *,
        total: float | None = None,
        completed: float | None = None,
        advance: float | None = None,
        description: str | None = None,
        refresh: bool = False,
        **fields: Any,
    ) -> None:
        task = self._tasks[task_id]
        if total is not None:
            task.total = total
        if description is not None:
            task.description = description
        if completed is not None:
            task.completed = completed
        if advance is not None:
            task.completed += advance
        fields.pop("visible", None)
        task.fields.update(fields)
        self._maybe_emit(task)

    def advance(self, task_id: int, advance: float = 1) -> None:
        self.update(task_id, advance=advance)

    def _maybe_emit(self, task: _PlainTask) -> None:
        if task.completed <= task.last_line_completed:
            return
        now = self._clock()
        since = now - task.last_line_at
        done = task.total is not None and task.completed >= task.total
        step = (task.total or 0) * self._every_fraction
        moved_a_step = step > 0 and task.completed - task.last_line_completed >= step
        if done or since >= self._interval_s or (moved_a_step and since >= self._min_gap_s):
            self._emit(task, now)

    def _emit(self, task: _PlainTask, now: float) -> None:
        task.last_line_at, task.last_line_completed = now, task.completed
        task.finished_line = task.total is not None and task.completed >= task.total
        if self._enabled:
            print(self.line(task, now), file=sys.stderr, flush=True)

    def line(self, task: _PlainTask, now: float) -> str:
        """``<description>: <done>/<total> (<pct>%) <rate>/s elapsed H:MM:SS eta H:MM:SS | <columns>``."""
        elapsed = max(now - task.started, 0.0)
        moved = task.completed - task.start_completed
        rate = moved / elapsed if elapsed > 0 else 0.0
        parts = [f"{task.description}: {_count(task.completed)}"]
        if task.total:
            parts[0] += f"/{_count(task.total)} ({100 * task.completed / task.total:.0f}%)"
        parts.append(f"{_rate(rate)}/s")
        parts.append(f"elapsed {_clock_time(elapsed)}")
        if task.total is not None and task.completed >= task.total:
            parts.append("done")
        elif task.total and rate > 0:
            parts.append(f"eta {_clock_time((task.total - task.completed) / rate)}")
        columns = [text for text in (self._render(column, task) for column in self._columns) if text]
        return " ".join(parts) + "".join(f" | {text}" for text in columns)

    @staticmethod
    def _render(column: TextColumn, task: _PlainTask) -> str:
        text_format = column.text_format if isinstance(column.text_format, str) else str(column.text_format)
        try:
            text = text_format.format(task=task)
        except (KeyError, AttributeError, ValueError, IndexError, TypeError):
            return ""
        return Text.from_markup(text).plain.strip() if column.markup else text.strip()


def _count(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))


def _rate(rate: float) -> str:
    return f"{rate:.3g}" if rate < 100 else f"{rate:,.0f}"


def _clock_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


# --- other libraries' bars ----------------------------------------------------------------------------


@contextmanager
def quiet_datasets_bars() -> Iterator[None]:
    """Hide `datasets`' own bars ("Saving the dataset", "Map") where ours already reports the work."""
    import datasets

    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


@contextmanager
def quiet_transformers_bars() -> Iterator[None]:
    """Hide transformers' own bars (checkpoint loading at every save) where ours shows the steps."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


# --- logging ------------------------------------------------------------------------------------------

OUR_LOGGER = "cotspec"
LIBRARY_LOGGERS = ("transformers", "datasets", "huggingface_hub", "accelerate", "peft", "httpx")
"""Libraries whose INFO messages `configure_logging(verbose=True)` shows (downloads, loading, requests)."""
_VERBOSITY_ENV = {
    "transformers": "TRANSFORMERS_VERBOSITY",
    "datasets": "DATASETS_VERBOSITY",
    "huggingface_hub": "HF_HUB_VERBOSITY",
}
_PLAIN_FORMAT = "%(message)s"
_VERBOSE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (pytest's capture, rich's redirect while a bar is
    live), not to the stream that was current when logging was configured."""

    _cotspec = True

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(verbose: bool = False) -> None:
    """Route log messages to stderr: cotspec's warnings always; with `verbose`, INFO messages of cotspec
    and of `LIBRARY_LOGGERS` too, each line with its time, level and logger name.

    Call it once from a front end (the CLI's app callback; a notebook may call it too). Calling it again
    replaces the earlier setting; it never adds a second handler.

        configure_logging(verbose=True)   # cotspec -v: downloads, dequantization, retries
    """
    level = logging.INFO if verbose else logging.WARNING
    formatter = logging.Formatter(_VERBOSE_FORMAT if verbose else _PLAIN_FORMAT, "%H:%M:%S")
    _route(logging.getLogger(OUR_LOGGER), formatter, level)
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if name in _VERBOSITY_ENV:
            logger.setLevel(level)  # these keep their own stderr handler: only their level changes
        elif verbose:
            _route(logger, formatter, logging.INFO)
        else:
            _unroute(logger, logging.NOTSET)
    # transformers, datasets and huggingface_hub set their level from the environment when first
    # imported: set it there too, for a library imported after this call (and for child processes).
    global _verbosity_env_set
    for variable in _VERBOSITY_ENV.values():
        if verbose:
            os.environ[variable] = "info"
        elif _verbosity_env_set:
            os.environ.pop(variable, None)
    _verbosity_env_set = verbose
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        (hf_logging.set_verbosity_info if verbose else hf_logging.set_verbosity_warning)()


_verbosity_env_set = False


def _route(logger: logging.Logger, formatter: logging.Formatter, level: int) -> None:
    """`logger` writes through one handler of ours at `level` (not also through the root's)."""
    _unroute(logger, level)
    handler = _StderrHandler()
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.propagate = False


def _unroute(logger: logging.Logger, level: int) -> None:
    """Undo `_route`: no handler of ours, messages propagate as by default, `logger` at `level`."""
    ours = [handler for handler in logger.handlers if getattr(handler, "_cotspec", False)]
    for handler in ours:
        logger.removeHandler(handler)
    if ours:
        logger.propagate = True
    logger.setLevel(level)
