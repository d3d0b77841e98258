"""Generation backends, by name.

Backends are imported on first use: asking for the OpenAI-compatible client must not import torch.
Adding a backend is one entry in `BACKENDS`.
"""

from __future__ import annotations

import importlib

from ..errors import CotspecError
from .base import Backend, Completion, ProgressCallback, SamplingParams

BACKENDS: dict[str, str] = {
    "transformers": "cotspec.backends.transformers_backend:TransformersBackend",
    "openai": "cotspec.backends.openai_backend:OpenAIBackend",
}
"""Backend name -> ``module:Class`` implementing the `Backend` protocol."""


def get_backend_class(name: str) -> type:
    """The class registered as `name`; CotspecError listing the known names otherwise."""
    try:
        target = BACKENDS[name]
    except KeyError:
        known = ", ".join(sorted(BACKENDS))
        raise CotspecError(f"--backend: unknown backend '{name}'; choose one of {known}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


__all__ = ["BACKENDS", "Backend", "Completion", "ProgressCallback", "SamplingParams", "get_backend_class"]
