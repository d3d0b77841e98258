"""Rich progress bars with ETA and throughput, shared by every long loop."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def make_progress(*extra_columns: TextColumn) -> Progress:
    """A progress bar on stderr: description, bar, done/total, elapsed, ETA, plus any extra columns.

    Extra columns read task fields, e.g. ``TextColumn("{task.fields[tok_s]:.0f} tok/s")``.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra_columns,
        console=Console(stderr=True),
        # Progress bars are for people; in CI logs or pipes they'd only add noise.
        disable=not sys.stderr.isatty(),
    )


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
