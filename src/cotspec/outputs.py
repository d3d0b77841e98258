"""Checks on an output path (the `out` setting) made before a command loads or writes anything: can it be written, and is it ours?

    check_output_dir(Path("runs/e"), EVAL_OUTPUT)           # eval: a run directory it may resume
    check_output_dir(Path("runs/data"), BUILD_OUTPUT)       # build: replaced whole, so it must be ours
    check_output_file(Path("runs/chains.parquet"))          # store export: one file, replaced

A command that fails half-way must not have claimed, filled or deleted anything, so every problem with
the output path is found up front and reported as one line naming the path (a `ConfigError` of the
`out` setting, or whichever `field` the caller names): a file where a directory
belongs (or under it), a directory nobody may write (read-only media, no permission), or a directory
that holds what another command wrote. Writability is asked of the kernel (`os.access`), which answers
for read-only file systems even to root, for whom permission bits stop nothing.

Why "ours" matters: `cotspec build` replaces its whole output directory, so pointing it at a training
run (`train --data D --out D`) used to delete the trained model. A directory is a command's own when it
holds that command's marker file and nothing but the entries that command writes.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import ConfigError


@dataclass(frozen=True)
class OutputLayout:
    """What one command writes at the top of its output directory."""

    command: str
    """As users type it, e.g. ``cotspec build``."""
    marker: str
    """The file every finished (or started) output of the command holds."""
    entries: frozenset[str]
    """Every top-level name the command writes, the marker included."""
    scratch: frozenset[str] = frozenset()
    """Names a killed run may leave before the marker exists (half-done atomic writes): they count as ours."""


EVAL_OUTPUT = OutputLayout(
    "cotspec eval",
    "run.json",
    frozenset({"run.json", "summary.json", "predictions"}),
    frozenset({"run.json.tmp", "summary.json.tmp"}),
)
BUILD_OUTPUT = OutputLayout("cotspec build", "build.json", frozenset({"build.json", "dataset_dict.json", "train"}))
# Written by `cotspec train` (which does not check through this module); known here to name it in refusals.
TRAIN_OUTPUT = OutputLayout("cotspec train", "config.yaml", frozenset({"config.yaml", "train_summary.json", "model", "data"}))
_KNOWN = (EVAL_OUTPUT, BUILD_OUTPUT, TRAIN_OUTPUT)


def check_output_dir(path: Path, layout: OutputLayout, *, field: str = "out", replaced_whole: bool = False) -> None:
    """Refuse `path` unless `layout.command` can create or resume its output there.

    `field`: the config setting that gave `path`, named by the `ConfigError` raised.
    `replaced_whole`: the command builds a new directory next to `path` and swaps it in, so the parent
    must be writable as well.
    """
    path = Path(path)
    with _looking_at(path, field):
        if path.exists() and not path.is_dir():
            raise ConfigError(field, f"{path} is a file; give a directory for the output of {layout.command}")
        check_can_write_in(path, field, path)
        if replaced_whole:
            check_can_write_in(path.absolute().parent, field, path)
        if path.is_dir():
            _check_ours(path, layout, field)


def check_output_file(path: Path, *, field: str = "out", example_name: str = "samples.jsonl") -> None:
    """Refuse `path` unless a file can be written there (created next to it and renamed into place)."""
    path = Path(path)
    with _looking_at(path, field):
        if path.is_dir():
            raise ConfigError(field, f"{path} is a directory; give a file name such as {path / example_name}")
        check_can_write_in(path.absolute().parent, field, path)


@contextmanager
def writing_output(path: Path, *, field: str = "out") -> Iterator[None]:
    """Report an OSError raised while writing the output (disk full, media gone) as one line naming it.

    The checks above run first; this catches what only the write itself can reveal.
    """
    try:
        yield
    except OSError as err:
        reason = err.strerror or type(err).__name__
        where = f" ({err.filename})" if err.filename else ""
        raise ConfigError(
            field, f"{path}: cannot write the output: {reason}{where}; free space or choose another one"
        ) from None


@contextmanager
def _looking_at(path: Path, field: str) -> Iterator[None]:
    """An OSError while inspecting `path` (a directory we may not list) as one line naming it."""
    try:
        yield
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(
            field, f"{path}: cannot inspect it ({reason}: {err.filename}); choose another one"
        ) from None


def check_can_write_in(directory: Path, field: str, shown: Path) -> None:
    """`directory`, or the nearest of its ancestors that exists (where it would be created), is writable.

    `field` names the setting that gave `shown` (``out``).
    """
    existing = _nearest_existing(directory)
    if not existing.is_dir():
        raise ConfigError(
            field, f"{shown}: {existing} is a file, so nothing can be created under it; choose another one"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            field, f"{shown}: {existing} is not writable (read-only media or no permission); choose a writable one"
        )


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_ours(path: Path, layout: OutputLayout, field: str) -> None:
    names = sorted(entry.name for entry in path.iterdir() if entry.name not in layout.scratch)
    if not names:
        return
    foreign = [name for name in names if name not in layout.entries]
    if layout.marker in names and not foreign:
        return
    # Without its marker even our own names are someone else's (a plain `datasets` save looks like a build).
    raise ConfigError(
        field,
        f"{path} holds what {layout.command} did not write: {_describe(foreign or names)}; "
        "choose a new or empty directory (nothing was changed)"
    )


def _describe(foreign: list[str]) -> str:
    """The foreign entries, named by the command that wrote them where its marker tells."""
    shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
    for other in _KNOWN:
        if other.marker in foreign:
            return f"the output of {other.command} ({shown})"
    return f"other files ({shown})"
