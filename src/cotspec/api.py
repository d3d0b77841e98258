"""The Python API: each stage of the method as one call that takes its config and returns its result.

    import cotspec

    report = cotspec.sample(tasks="gsm8k", limit=8, n=4, model="teacher",
                            base_urls="http://127.0.0.1:8080/v1", store="runs/teacher.db")
    data = cotspec.build(store="runs/teacher.db", gold=True, out="runs/data")
    summary = cotspec.train("configs/distill-gold.yaml", out="runs/student", data__path="runs/data",
                            train__max_steps=20)
    result = cotspec.evaluate(model="runs/student/model", tasks="gsm8k,svamp", out="runs/eval")

Every stage takes either its config object (`SampleConfig`, `BuildConfig`, `DistillConfig`,
`EvalConfig`: the same dataclasses the CLI commands and YAML files are made of) or that object's fields
as keywords, not both. Keyword values are coerced as the CLI's are (``"gsm8k,svamp"`` or a list for a
tuple, a str for a path, ``"zero-shot"`` for a mode). A bad setting raises `cotspec.ConfigError`
naming the field (``limit: must be >= 1, got 0``); everything else a user can get wrong raises a one-line
`cotspec.CotspecError`. Progress shows as bars on a terminal and as periodic lines elsewhere
(`cotspec.progress`); call `cotspec.configure_logging(verbose=True)` to see the libraries' INFO messages.

Nothing heavy is imported until a stage runs: `import cotspec` does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

from .errors import CotspecError

if TYPE_CHECKING:
    from datasets import DatasetDict

    from .distill.config import DistillConfig
    from .evaluate.config import EvalConfig
    from .formats.config import BuildConfig
    from .teacher.config import SampleConfig
    from .teacher.sampler import SamplingReport

_C = TypeVar("_C")

__all__ = ["build", "evaluate", "sample", "train"]


def sample(config: SampleConfig | None = None, /, **fields: Any) -> SamplingReport:
    """Sample chains of thought from a teacher into a sample store (`cotspec sample`); returns the report.

    The teacher is a server fleet (``base_urls``, the openai backend) or a model run in-process (the
    transformers backend), built through `cotspec.backends.create_backend`. Re-running the same call
    resumes: only the (question, chain) pairs missing from the store are sampled.

        report = cotspec.sample(tasks="gsm8k", split="train", limit=8, n=4, top_logprobs=5,
                                model="smollm2-135m-instruct", base_urls="http://127.0.0.1:8080/v1",
                                store="runs/teacher.db", data_dir="../shared/data")
        report.written, report.written_correct   # chains stored by this call, and the correct ones

    Args:
        config: a `cotspec.teacher.config.SampleConfig`; or leave it out and pass its fields.
        **fields: `SampleConfig` fields (``store`` and ``model`` are required).
    """
    from .teacher.config import SampleConfig
    from .teacher.sampler import make_teacher_backend, run_sampling

    return run_sampling(_config(SampleConfig, config, fields, "sample"), make_teacher_backend)


def build(config: BuildConfig | None = None, /, **fields: Any) -> DatasetDict:
    """Build the paper's training formats from teacher chains and/or GSM8K's gold chains (`cotspec build`).

    Writes a `datasets` directory with its build.json manifest to ``out`` (replacing an earlier build
    there, refusing a directory that holds anything else) and returns it, memory-mapped.

        data = cotspec.build(gold=True, limit=64, out="runs/data", data_dir="../shared/data")
        data["train"][0]["format"], data["train"].num_rows

    Args:
        config: a `cotspec.formats.config.BuildConfig`; or leave it out and pass its fields.
        **fields: `BuildConfig` fields (``out`` is required, and ``store`` and/or ``gold``).
    """
    from .formats.build import build_training_data
    from .formats.config import BuildConfig

    return build_training_data(_config(BuildConfig, config, fields, "build"))


def train(
    config: DistillConfig | str | Path | None = None,
    /,
    *,
    overrides: Mapping[str, Any] | Sequence[str] = (),
    **fields: Any,
) -> dict[str, Any] | None:
    """Train (distill) a student (`cotspec train`); returns the run summary (train_summary.json).

    `config` is a `DistillConfig`, or the path of a YAML config file (``configs/distill-gold.yaml``) that
    keyword settings then override, as flags and ``key=value`` overrides do on the command line. A
    setting inside a section is a keyword with a double underscore (``train__lr=1e-4``), a dict for the
    section (``train={"lr": 1e-4, "max_steps": 20}``), or an entry of `overrides`, either a mapping of
    dotted keys (``{"train.lr": 1e-4}``) or ``"key=value"`` texts (``["train.lr=1e-4"]``). Re-running
    resumes from the last checkpoint; a finished run returns its stored summary and changes nothing.

        summary = cotspec.train("configs/distill-gold.yaml", out="runs/gold",
                                train__max_steps=20, data__limit=64)
        summary["steps"], summary["train_loss"], summary["model_dir"]

    Returns None on the non-main processes of a distributed run (``accelerate launch``).

    Args:
        config: a `cotspec.distill.config.DistillConfig`, a YAML file, or None (defaults).
        overrides: dotted keys and values applied last.
        **fields: top-level keys (``out``), sections as dicts, or ``section__key`` settings.
    """
    from . import config as config_system
    from .distill.config import DistillConfig
    from .distill.run import run_training

    if isinstance(config, DistillConfig):
        if fields or overrides:
            raise CotspecError(
                "cotspec.train: pass a DistillConfig or keyword settings, not both "
                "(dataclasses.replace changes a config object; a YAML file path takes keyword settings)"
            )
        return run_training(config)
    if config is not None and not isinstance(config, (str, Path)):
        raise CotspecError(f"cotspec.train: config must be a DistillConfig or a YAML file path, got {type(config).__name__}")
    settings: dict[str, tuple[Any, str]] = {}
    for name, value in fields.items():
        key = name.replace("__", ".")
        if isinstance(value, Mapping):
            for inner, inner_value in _flatten(value, key).items():
                settings[inner] = (inner_value, f"{name}[{inner.removeprefix(key + '.')!r}]")
        else:
            settings[key] = (value, name)
    texts: list[str] = []
    if isinstance(overrides, Mapping):
        for key, value in overrides.items():
            settings[key] = (value, key)
    else:
        texts = [str(item) for item in overrides]
    loaded = config_system.load(DistillConfig, None if config is None else Path(config), texts, settings)
    return run_training(loaded)


def evaluate(config: EvalConfig | None = None, /, **fields: Any) -> dict[str, Any]:
    """Evaluate a model on reasoning benchmarks (`cotspec eval`); returns the summary (summary.json).

    Predictions go to ``out``/predictions/<task>.jsonl as they are made; re-running resumes, and a
    finished run re-summarizes without loading the model.

        result = cotspec.evaluate(model="smollm2-135m-instruct", tasks="gsm8k,svamp", limit=20,
                                  out="runs/e", data_dir="../shared/data")
        result["tasks"]["gsm8k"]["accuracy"]

    Args:
        config: a `cotspec.evaluate.config.EvalConfig`; or leave it out and pass its fields.
        **fields: `EvalConfig` fields (``model`` and ``out`` are required).
    """
    from .evaluate.config import EvalConfig
    from .evaluate.runner import run_eval

    return run_eval(_config(EvalConfig, config, fields, "evaluate"))


def _config(cls: type[_C], config: _C | None, fields: Mapping[str, Any], stage: str) -> _C:
    """`config` itself, or a `cls` built from keyword `fields` (coerced to the fields' types)."""
    if config is not None:
        if fields:
            raise CotspecError(
                f"cotspec.{stage}: pass a {cls.__name__} or keyword settings, not both "
                "(dataclasses.replace changes a config object)"
            )
        if not isinstance(config, cls):
            raise CotspecError(f"cotspec.{stage}: config must be a {cls.__name__}, got {type(config).__name__}")
        return config
    from . import config as config_system

    # Unknown keywords are refused with a suggestion; values are coerced as the CLI's flags are.
    return config_system.from_tree(cls, dict(fields))


def _flatten(tree: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, dotted))
        else:
            flat[dotted] = value
    return flat
