"""Loading models: presets with embedded weights, GGUF files, local directories, hub ids."""

from __future__ import annotations

from .dtypes import cpu_has_native_bf16, resolve_device, resolve_dtype
from .loading import LoadedModel, cache_dir, check_model_reference, load_model, save_model
from .presets import PRESETS, Preset

__all__ = [
    "PRESETS",
    "LoadedModel",
    "Preset",
    "cache_dir",
    "check_model_reference",
    "cpu_has_native_bf16",
    "load_model",
    "resolve_device",
    "resolve_dtype",
    "save_model",
]
