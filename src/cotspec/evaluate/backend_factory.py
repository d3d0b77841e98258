"""Kept only for `cotspec.cli.eval_cmd`, which imports `build_backend` from here: delete this file once
it calls ``run_eval(config)`` (or imports `build_backend` from `cotspec.evaluate.runner`). Backends are
built by `cotspec.backends.create_backend`."""

from .runner import build_backend

__all__ = ["build_backend"]
