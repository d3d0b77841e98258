"""Local models that cannot load, as they turn up in practice: a download cut short, a hand-edited
config.json, a directory missing its weights. Shared by the loading tests and the CLI fault table
(importable as `models.broken_models`: tests/conftest.py puts tests/ on sys.path).

Every builder takes a scratch directory and a loadable save_pretrained directory and returns the
reference to pass as --model / student.model.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


def garbage_gguf(root: Path, good: Path) -> Path:
    path = root / "garbage.gguf"
    path.write_bytes(random.Random(0).randbytes(100))
    return path


def truncated_gguf(root: Path, good: Path) -> Path:
    """The right magic bytes, then the file ends: a download cut short."""
    path = root / "truncated.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00garbage")
    return path


def _copy(good: Path, root: Path, name: str) -> Path:
    target = root / name
    shutil.copytree(good, target)
    return target


def config_not_json(root: Path, good: Path) -> Path:
    model = _copy(good, root, "config-not-json")
    (model / "config.json").write_text('{"model_type": "llama",\n')
    return model


def unknown_model_type(root: Path, good: Path) -> Path:
    model = _copy(good, root, "unknown-type")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "model_type": "no-such-arch"}))
    return model


def without_weights(root: Path, good: Path) -> Path:
    model = _copy(good, root, "no-weights")
    (model / "model.safetensors").unlink()
    return model


def without_tokenizer(root: Path, good: Path) -> Path:
    model = _copy(good, root, "no-tokenizer")
    for path in model.glob("tokenizer*"):
        path.unlink()
    return model


def corrupt_weights(root: Path, good: Path) -> Path:
    model = _copy(good, root, "corrupt-weights")
    (model / "model.safetensors").write_bytes(random.Random(0).randbytes(100))
    return model


@dataclass(frozen=True)
class BrokenModel:
    build: Callable[[Path, Path], Path]
    says: tuple[str, ...]
    """Fragments of the one-line error (besides the path, which every message names)."""
    found_before_loading: bool = True
    """`check_model_reference` sees it (cheap checks); otherwise only loading does."""


BROKEN_MODELS: dict[str, BrokenModel] = {
    "garbage-gguf": BrokenModel(garbage_gguf, ("not a GGUF file",)),
    "truncated-gguf": BrokenModel(truncated_gguf, ("cannot be loaded",), found_before_loading=False),
    "config-not-json": BrokenModel(config_not_json, ("config.json", "not valid JSON", "line 2")),
    "unknown-model-type": BrokenModel(unknown_model_type, ("config.json", "model_type 'no-such-arch'")),
    "no-weights": BrokenModel(without_weights, ("has no weights",)),
    "no-tokenizer": BrokenModel(without_tokenizer, ("has no tokenizer",)),
    "corrupt-weights": BrokenModel(corrupt_weights, ("cannot be loaded",), found_before_loading=False),
}
