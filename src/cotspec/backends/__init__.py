"""Generation backends, by name: the one place that knows which backends exist and how to build them.

Backends are imported on first use: asking for the OpenAI-compatible client must not import torch.
Adding a backend is one entry in `BACKENDS` naming a class with a ``from_settings`` classmethod;
evaluation (its `backend` setting) and sampling then build it through `create_backend`.
"""

from __future__ import annotations

import importlib

from ..errors import ConfigError
from .base import (
    Backend,
    BackendSettings,
    Completion,
    ProgressCallback,
    RegisteredBackend,
    SampleRequest,
    SampleResult,
    SamplingParams,
    sample_seed,
)

BACKENDS: dict[str, str] = {
    "transformers": "cotspec.backends.transformers_backend:TransformersBackend",
    "openai": "cotspec.backends.openai_backend:OpenAIBackend",
}
"""Backend name -> ``module:Class`` implementing `RegisteredBackend` (and its instances `Backend`)."""


def check_backend_name(name: str) -> None:
    """ConfigError of the `backend` setting, listing the known names, unless `name` is registered;
    imports nothing."""
    if name not in BACKENDS:
        known = ", ".join(sorted(BACKENDS))
        raise ConfigError("backend", f"unknown backend {name!r}; choose one of {known}")


def get_backend_class(name: str) -> RegisteredBackend:
    """The class registered as `name` (its module imported now); ConfigError for an unknown name."""
    check_backend_name(name)
    module_name, class_name = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_backend(name: str, settings: BackendSettings) -> Backend:
    """A ready backend: the class registered as `name`, built from `settings` (models load, URLs checked)."""
    return get_backend_class(name).from_settings(settings)


__all__ = [
    "BACKENDS",
    "Backend",
    "BackendSettings",
    "Completion",
    "ProgressCallback",
    "RegisteredBackend",
    "SampleRequest",
    "SampleResult",
    "SamplingParams",
    "check_backend_name",
    "create_backend",
    "get_backend_class",
    "sample_seed",
]
