"""cotspec: specialize small language models for multi-step reasoning (Fu et al., ICML 2023).

The Python API (`cotspec.api`), one call per stage, each taking its config object or its fields::

    import cotspec

    cotspec.sample(tasks="gsm8k", n=4, model="teacher", base_urls="http://127.0.0.1:8080/v1",
                   store="runs/teacher.db")                              # -> SamplingReport
    cotspec.build(store="runs/teacher.db", out="runs/data")              # -> datasets.DatasetDict
    cotspec.train("configs/distill-kd.yaml", out="runs/student", data__path="runs/data")  # -> summary
    cotspec.evaluate(model="runs/student/model", tasks="gsm8k", out="runs/eval")         # -> summary

Importing cotspec is cheap: the stages, their configs and torch load on first use.
"""

from __future__ import annotations

import importlib
import types
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "sample": "cotspec.api",
    "build": "cotspec.api",
    "train": "cotspec.api",
    "run": "cotspec.pipeline",
    "SampleConfig": "cotspec.teacher.config",
    "BuildConfig": "cotspec.formats.config",
    "DistillConfig": "cotspec.distill.config",
    "EvalConfig": "cotspec.evaluate.config",
    "SamplingReport": "cotspec.teacher.sampler",
    "CotspecError": "cotspec.errors",
    "ConfigError": "cotspec.errors",
    "configure_logging": "cotspec.progress",
}

__all__ = ["__version__", "evaluate", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cotspec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _CallableEvaluatePackage(types.ModuleType):
    """`cotspec.evaluate` is both the package `cotspec.evaluate` (runner, config, ...) and the API call
    `cotspec.evaluate(config | **fields)`: importing a submodule binds the package to that name, so the
    package itself is made callable rather than shadowed."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from .api import evaluate

        return evaluate(*args, **kwargs)


from . import evaluate  # noqa: E402  (its __init__ imports nothing)

evaluate.__class__ = _CallableEvaluatePackage
if not evaluate.__doc__:
    evaluate.__doc__ = (
        "Evaluation: `cotspec.evaluate(config | **fields)` runs `cotspec.api.evaluate` (see its docstring); "
        "the package holds the runner and `EvalConfig`."
    )
