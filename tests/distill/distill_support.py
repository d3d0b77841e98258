"""Helpers shared by the training tests (importable: tests/distill/conftest.py puts this folder on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def step_losses(run_dir: Path) -> dict[int, float]:
    """Logged loss per optimizer step, from the newest checkpoint's trainer_state.json."""
    newest = max(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((newest / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}


def assert_same_weights(dir_a: Path, dir_b: Path, model_class, atol: float = 0.0) -> None:
    a, b = model_class.from_pretrained(dir_a), model_class.from_pretrained(dir_b)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(pa, pb, atol=atol, rtol=0), name
