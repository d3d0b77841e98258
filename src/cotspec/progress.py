"""Rich progress bars with ETA and throughput, shared by every long loop."""

from __future__ import annotations

import sys

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
