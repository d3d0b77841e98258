"""EvalConfig -> a ready backend. The only place evaluation knows backends by name."""

from __future__ import annotations

from ..backends import Backend, get_backend_class
from .config import EvalConfig


def build_backend(config: EvalConfig) -> Backend:
    """Load the model in-process (transformers) or connect to the servers (openai)."""
    backend_class = get_backend_class(config.backend)
    if config.backend == "openai":
        return backend_class.from_options(
            config.base_urls, model=config.model, api_key_env=config.api_key_env, concurrency=config.concurrency
        )
    return backend_class.from_model(
        config.model, dtype=config.dtype, trust_remote_code=config.trust_remote_code, batch_size=config.batch_size
    )
