"""What a training run keeps on disk, and how it is written so that a kill never leaves half of it.

A process can be killed at any byte of a write (SIGKILL, the OOM killer, Ctrl-C twice). So nothing is
written under its final name: checkpoints, model/, train_summary.json and config.yaml are written under
``<out>/.staging/`` and renamed into place once complete. A rename within one file system is atomic, so a
``checkpoint-<step>`` or ``model`` directory is always whole. The next run deletes what ``.staging``
holds, and checkpoint directories without a readable trainer_state.json: cotspec before this scheme let
the Trainer write checkpoints in place (trainer_state.json last), so those are the ones a kill cut short.
Nothing is fsynced: a kill of the process is covered, a power cut of the machine is not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

STAGING_DIR = ".staging"
TRAINER_STATE = "trainer_state.json"  # transformers' TRAINER_STATE_NAME, the last file of a checkpoint
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR naming


def checkpoint_dirs(out: Path) -> list[Path]:
    """Every ``checkpoint-<step>`` directory in `out`, complete or not, oldest step first."""
    if not out.is_dir():
        return []
    found = [path for path in out.iterdir() if _CHECKPOINT_NAME.match(path.name) and path.is_dir()]
    return sorted(found, key=_step_in_name)


def checkpoint_step(checkpoint: Path) -> int | None:
    """The optimizer step a complete checkpoint holds; None when it is incomplete."""
    try:
        return int(json.loads((checkpoint / TRAINER_STATE).read_text(encoding="utf-8"))["global_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def newest_complete_checkpoint(out: Path) -> Path | None:
    complete = [path for path in checkpoint_dirs(out) if checkpoint_step(path) is not None]
    return complete[-1] if complete else None


def remove_leftovers(out: Path) -> list[str]:
    """Delete what killed runs left behind (staged writes, incomplete checkpoints); returns the
    checkpoint names removed."""
    shutil.rmtree(out / STAGING_DIR, ignore_errors=True)
    incomplete = [path for path in checkpoint_dirs(out) if checkpoint_step(path) is None]
    for path in incomplete:
        shutil.rmtree(path)
    return [path.name for path in incomplete]


def staged(out: Path, name: str) -> Path:
    """Where `name` (a file or directory of `out`) is written before `publish` gives it its final name."""
    staging = out / STAGING_DIR
    staging.mkdir(parents=True, exist_ok=True)
    return staging / name


def publish(staged_path: Path, final: Path) -> None:
    """Rename the complete `staged_path` to `final`, replacing what is there.

    A directory cannot be renamed over a non-empty one, so an existing `final` directory is first moved
    back into staging; a kill between the two renames leaves no `final` (the next run rebuilds model/ from
    the last checkpoint), never a mix of old and new files.
    """
    if final.is_dir():
        replaced = staged_path.with_name(staged_path.name + ".replaced")
        os.replace(final, replaced)
        os.replace(staged_path, final)
        shutil.rmtree(replaced)
    else:
        os.replace(staged_path, final)


def write_text(path: Path, text: str) -> None:
    """Write a file of the run directory (`path` is directly in it) so that a kill leaves the old or the new."""
    staged_path = staged(path.parent, path.name)
    staged_path.write_text(text, encoding="utf-8")
    publish(staged_path, path)


def remove_staging(out: Path) -> None:
    """Drop the (by now empty) staging directory once the run's last write is in place."""
    shutil.rmtree(out / STAGING_DIR, ignore_errors=True)


def _step_in_name(path: Path) -> int:
    return int(_CHECKPOINT_NAME.match(path.name).group(1))
