"""Which model a run's predictions came from, by content: the files of a local model, hashed.

A run directory records every file of the model (a save_pretrained directory's files, a .gguf file, a
preset's weights file) with its size, modification time and SHA-256. On resume each file is stat'ed: an
unchanged size and mtime keep the recorded hash, so a finished run re-summarizes without reading the
weights; any other file is hashed again, and a hash that differs means the model at that path is not the
one the run's predictions came from (retrained in place), which `run_eval` refuses.

Why this choice:
- The content decides, not the path, the size or the mtime: a retrained model has the same path, file
  names and sizes; a copied or restored model has new mtimes and the same content (accepted).
- Cheap: hashing reads every byte once (about a second for the 540 MB default model on the 2-core
  reference machine), and only when the model loads anyway (the first run) or a file's stat changed.
  A rewrite that keeps both size and nanosecond mtime would go unnoticed; no training tool does that.
- Every file counts, tokenizer and generation config included: each changes what the model answers.

Hub ids and served models (`--backend openai`) have no local files; they are identified by name only.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import CotspecError
from ..tasks.datadir import sha256_file
from .config import EvalConfig

FileRecord = dict[str, object]
"""{"size": bytes, "mtime_ns": int, "sha256": hex digest} of one model file."""


def local_model_files(config: EvalConfig) -> list[Path] | None:
    """The files that make up `config.model`, or None when it is not on this machine (or not yet)."""
    if config.backend != "transformers":
        return None
    path = Path(config.model).expanduser()
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    return _preset_file(config.model)


def _preset_file(reference: str) -> list[Path] | None:
    from ..models.presets import PRESETS, preset_path

    if reference not in PRESETS:
        return None  # a hub id
    try:
        return [preset_path(PRESETS[reference])]
    except CotspecError:
        return None  # not installed: loading the model says how to install it


def fingerprint(files: list[Path], recorded: dict[str, FileRecord] | None = None) -> dict[str, FileRecord]:
    """Name -> size, mtime and SHA-256 of each file; a file whose size and mtime match `recorded` keeps
    the recorded hash without being read."""
    recorded = recorded or {}
    records = {}
    for path in files:
        stat = path.stat()
        known = recorded.get(path.name)
        if known and (known.get("size"), known.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns):
            digest = known["sha256"]
        else:
            digest = sha256_file(path)
        records[path.name] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return records


def first_difference(recorded: dict[str, FileRecord], current: dict[str, FileRecord]) -> str | None:
    """The first file (by name) that was added, removed or changed in content, or None."""
    for name in sorted(set(recorded) | set(current)):
        if name not in recorded:
            return f"{name} was added"
        if name not in current:
            return f"{name} was removed"
        if recorded[name].get("sha256") != current[name]["sha256"]:
            return f"{name} changed"
    return None
