"""What a distillation run is: one dataclass per config section, loaded from YAML with dotted overrides.

    cotspec train --config configs/distill-gold.yaml --out runs/student train.lr=1e-4 data.limit=200

Every field's docstring is its help text (`cotspec train --help` lists them all) and the comment above
it in the resolved ``<out>/config.yaml``. Values are checked where they are read: an unknown key, a
value of the wrong type and an out-of-range value are each one `CotspecError` line naming the key (and
the file and line when it came from a file).
"""

from __future__ import annotations

import difflib
import math
import re
import textwrap
import types
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union, get_args, get_origin, get_type_hints

import yaml

from ..errors import CotspecError
from ..fieldhelp import field_docs
from ..formats.templates import FORMATS


@dataclass(frozen=True)
class StudentConfig:
    """The model being trained."""

    model: str = "smollm2-135m-instruct"
    """Student to fine-tune: a preset name, a save_pretrained directory, a .gguf file or a hub id (T5 /
    Flan-T5 encoder-decoders and decoder-only models both work)."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: about 1/3 more compute for far less activation memory."""

    def __post_init__(self) -> None:
        if not self.model:
            raise CotspecError("student.model is empty: name a preset, a directory, a .gguf file or a hub id")


@dataclass(frozen=True)
class DataConfig:
    """The training rows: a `cotspec build` output, or build settings to build one into <out>/data."""

    path: Path | None = None
    """A `cotspec build` output directory (--data). When unset, the run builds one into <out>/data from
    the build keys below (gold, store, formats, ...)."""
    gold: bool = False
    """Build key: use GSM8K's human-written solutions as chains (no teacher needed, no log-probs)."""
    store: Path | None = None
    """Build key: sample store (.db) of teacher chains; its correct chains are used."""
    formats: tuple[str, ...] = FORMATS
    """Build key: data formats, comma-separated: zero_shot_answer, zero_shot_cot, in_context_answer,
    in_context_cot."""
    weights: tuple[float, ...] | None = None
    """Build key: mixture weights, one per format in `formats` order (default: every row once)."""
    shots: int = 4
    """Build key: in-context exemplars per prompt."""
    seed: int = 0
    """Build key: seed of the exemplar draws and of the mixture's repeats/subsamples."""
    limit: int | None = None
    """Build key: use only the first N usable GSM8K training questions, for quick runs."""
    max_per_question: int | None = None
    """Build key: keep at most N store chains per question."""
    data_dir: Path | None = None
    """Build key: benchmark files; default $COTSPEC_DATA_DIR, else the user cache dir."""
    max_length: int = 1024
    """Longest row kept, in student tokens: prompt + target for decoder-only students, each side for
    encoder-decoders. Longer rows are dropped (counted in the log), never truncated."""
    cache_dir: Path | None = None
    """Where tokenized datasets are cached, keyed by the rows' content hash and the student tokenizer;
    default <user cache>/cotspec/tokenized."""
    num_proc: int = 1
    """Processes used to tokenize and align rows (once per dataset and tokenizer; then cached)."""

    def __post_init__(self) -> None:
        if self.path is not None and (self.gold or self.store is not None):
            raise CotspecError("data.path is a finished build; drop data.gold / data.store, or drop data.path to build here")
        for name in self.formats:
            if name not in FORMATS:
                raise CotspecError(f"data.formats: unknown format {name!r}; choose from {', '.join(FORMATS)}")
        _at_least("data.max_length", self.max_length, 8)
        _at_least("data.num_proc", self.num_proc, 1)
        if self.limit is not None:
            _at_least("data.limit", self.limit, 1)

    @property
    def builds_here(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class LossConfig:
    """Sample matching (cross-entropy) or distribution matching (divergence to the teacher's top-k)."""

    objective: Literal["kd", "ce"] = "kd"
    """kd: distribution matching on target tokens that carry the teacher's top-k (aligned to the
    student's tokenizer), cross-entropy on all others (answer-only formats, gold chains, end of
    sequence); ce: sample matching (cross-entropy) everywhere."""
    kd_weight: float = 1.0
    """On tokens with teacher top-k: (1 - w) * cross-entropy + w * divergence. 1 is the paper's pure
    distribution matching."""
    divergence: Literal["forward_kl", "reverse_kl", "generalized_jsd"] = "forward_kl"
    """Divergence to the teacher: forward_kl (the paper's), reverse_kl, or generalized_jsd (GKD)."""
    forward_mode: Literal["unnormalized", "renormalized", "tail"] = "unnormalized"
    """forward_kl on top-k: unnormalized (the paper's: teacher probabilities as given), renormalized
    (teacher truncated to top-k and renormalized), tail (k candidates + one rest-of-vocabulary bucket)."""
    support: Literal["renormalized", "tail"] = "renormalized"
    """reverse_kl / generalized_jsd support: the top-k renormalized, or top-k plus a tail bucket."""
    beta: float = 0.5
    """generalized_jsd interpolation, 0 < beta < 1 (small is forward-KL-like, large reverse-KL-like)."""
    top_k: int | None = None
    """Teacher candidates kept per position (default: as many as the teacher returned)."""
    chunk_tokens: int = 256
    """Target tokens per chunk of the output head + loss: only chunk x vocabulary logits exist at once
    (recomputed in the backward: one more head matmul); 0 computes all logits at once. Not used under
    FSDP / DeepSpeed."""

    def __post_init__(self) -> None:
        _at_least("loss.chunk_tokens", self.chunk_tokens, 0)
        if not 0.0 <= self.kd_weight <= 1.0:
            raise CotspecError(f"loss.kd_weight must be in [0, 1], got {self.kd_weight}")
        if not 0.0 < self.beta < 1.0:
            raise CotspecError(f"loss.beta must be in (0, 1), got {self.beta}")
        if self.top_k is not None:
            _at_least("loss.top_k", self.top_k, 1)


@dataclass(frozen=True)
class LoraConfig:
    """Low-rank adapters (PEFT) instead of full fine-tuning."""

    enabled: bool = False
    """Train LoRA adapters instead of every weight."""
    r: int = 16
    """Adapter rank."""
    alpha: float = 32.0
    """Adapter scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.05
    """Dropout on the adapters' input."""
    target_modules: tuple[str, ...] = ("all-linear",)
    """Modules that get adapters, comma-separated names (q_proj,v_proj), or all-linear."""

    def __post_init__(self) -> None:
        _at_least("lora.r", self.r, 1)
        if not 0.0 <= self.dropout < 1.0:
            raise CotspecError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise CotspecError("lora.target_modules is empty: name modules (q_proj,v_proj) or all-linear")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization, batching, precision, checkpoints and logging."""

    global_batch_size: int = 16
    """Rows per optimizer step, over all processes and accumulation steps together."""
    micro_batch_size: int = 4
    """Rows per forward/backward pass on one process; gradient accumulation makes up the rest."""
    lr: float = 5e-4
    """Peak learning rate (AdamW); the paper's is 5e-4."""
    warmup_steps: int = 10
    """Optimizer steps of linear warm-up from 0 to lr; the paper's is 10."""
    lr_schedule: Literal["cosine", "linear", "constant_with_warmup"] = "cosine"
    """Learning-rate decay after warm-up."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay (not applied to biases and norms)."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this (0 disables clipping)."""
    optim: str = "adamw_torch_fused"
    """transformers optimizer name (adamw_torch_fused, adamw_torch, adamw_8bit, ...)."""
    epochs: float = 1.0
    """Passes over the data (fractions allowed); ignored when max_steps is set."""
    max_steps: int | None = None
    """Stop after this many optimizer steps."""
    precision: Literal["auto", "bf16-mixed", "fp32"] = "auto"
    """bf16-mixed: float32 weights and optimizer, bfloat16 autocast compute; fp32: float32 throughout;
    auto: bf16-mixed on GPUs and CPUs with native bf16 instructions, else fp32."""
    batching: Literal["per-format", "mixed"] = "per-format"
    """per-format: every optimizer step holds rows of one data format (the paper's); mixed: formats mix."""
    group_by_length: bool = True
    """Put rows of similar length in the same micro-batch, so padding wastes next to no compute."""
    save_every: int = 500
    """Write a checkpoint (model, tokenizer, optimizer, scheduler, RNG) every N optimizer steps."""
    save_total_limit: int | None = 2
    """Keep only the newest N checkpoints (unset keeps all)."""
    resume: bool = True
    """Continue from the newest checkpoint in <out> when there is one (same config required)."""
    log_every: int = 10
    """Log loss, learning rate and tokens/s every N optimizer steps."""
    report_to: tuple[str, ...] = ()
    """Experiment trackers, comma-separated: tensorboard, wandb, ... (default: none)."""
    seed: int = 0
    """Seed of data order, initialization of new weights (LoRA) and dropout."""
    num_workers: int = 0
    """DataLoader worker processes (0 collates in the training process)."""

    def __post_init__(self) -> None:
        _at_least("train.global_batch_size", self.global_batch_size, 1)
        _at_least("train.micro_batch_size", self.micro_batch_size, 1)
        if self.global_batch_size % self.micro_batch_size:
            raise CotspecError(
                f"train.global_batch_size={self.global_batch_size} is not a multiple of "
                f"train.micro_batch_size={self.micro_batch_size}"
            )
        if not self.lr > 0:
            raise CotspecError(f"train.lr must be > 0, got {self.lr}")
        _at_least("train.warmup_steps", self.warmup_steps, 0)
        if self.weight_decay < 0:
            raise CotspecError(f"train.weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm < 0:
            raise CotspecError(f"train.max_grad_norm must be >= 0, got {self.max_grad_norm}")
        if not self.epochs > 0:
            raise CotspecError(f"train.epochs must be > 0, got {self.epochs}")
        if self.max_steps is not None:
            _at_least("train.max_steps", self.max_steps, 1)
        _at_least("train.save_every", self.save_every, 1)
        if self.save_total_limit is not None:
            _at_least("train.save_total_limit", self.save_total_limit, 1)
        _at_least("train.log_every", self.log_every, 1)
        _at_least("train.num_workers", self.num_workers, 0)


@dataclass(frozen=True)
class DistillConfig:
    """A distillation run: the student, its data, the loss, adapters, and how to train."""

    out: Path | None = None
    """Run directory (--out): config.yaml, checkpoint-<step>/, the final model in model/, logs."""
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def require_out(self) -> Path:
        if self.out is None:
            raise CotspecError("out is not set: pass --out DIR (or `out:` in the config file)")
        return Path(self.out)


SECTIONS: dict[str, type] = {
    "student": StudentConfig,
    "data": DataConfig,
    "loss": LossConfig,
    "lora": LoraConfig,
    "train": TrainConfig,
}

# Keys that may change when a run resumes: they decide how long, how often and where, not what is trained.
RESUMABLE_CHANGES = frozenset(
    {
        "out", "data.path", "data.data_dir", "data.cache_dir", "data.num_proc", "train.epochs",
        "train.max_steps", "train.save_every", "train.save_total_limit", "train.resume", "train.log_every",
        "train.report_to", "train.num_workers",
    }
)


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise CotspecError(f"{key} must be >= {minimum}, got {value}")


# --- loading -----------------------------------------------------------------------------------------


def load_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, tuple[Any, str]] | None = None,
) -> DistillConfig:
    """The config of a run: defaults, then the YAML file, then command-line `flags` (dotted key ->
    (value or None, flag name), e.g. ``{"data.path": (path, "--data")}``), then the ``key=value``
    overrides, each later one winning. Values are coerced to the field's type."""
    tree: dict[str, Any] = {}
    lines: dict[str, int] = {}
    source = "config"
    if path is not None:
        source = str(path)
        tree, lines = _read_yaml(Path(path))
    where: dict[str, str] = {key: f"{source}:{line}" for key, line in lines.items()}
    for key, (value, flag) in (flags or {}).items():
        if value is not None:
            _set_dotted(tree, key, value)
            _blame(where, key, flag)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CotspecError(f"override {item!r} is not key=value (e.g. train.lr=1e-4)")
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            value = text
        _set_dotted(tree, key, value)
        _blame(where, key, f"override {item!r}")
    return _build(DistillConfig, tree, prefix="", where=where, source=source)


def _blame(where: dict[str, str], key: str, source: str) -> None:
    """Record `source` for `key` and for each section on its path (an unknown section is reported there)."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        where[".".join(parts[:i])] = source
    where[key] = source


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CotspecError(f"--config {path}: no such file") from None
    try:
        tree = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}" if mark is not None else ""
        raise CotspecError(f"{path}{at}: not valid YAML ({getattr(err, 'problem', err)})") from None
    if tree is None:
        return {}, {}
    if not isinstance(tree, dict):
        raise CotspecError(f"{path}: the config must be a mapping of sections (student:, data:, ...), got {type(tree).__name__}")
    return tree, _key_lines(node)


def _key_lines(node: yaml.Node | None, prefix: str = "") -> dict[str, int]:
    """Dotted key -> 1-based line of that key in the YAML text (for error messages)."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}{key_node.value}"
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key + "."))
    return lines


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def _build(cls: type, tree: Mapping[str, Any], *, prefix: str, where: Mapping[str, str], source: str) -> Any:
    hints = get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise CotspecError(f"{where.get(key, source)}: unknown key '{key}'{_suggest(str(name), names, prefix)}")
        hint = hints[name]
        if isinstance(hint, type) and is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise CotspecError(f"{where.get(key, source)}: '{key}' is a section; give its keys ({key}.<key>=...)")
            kwargs[name] = _build(hint, value, prefix=key + ".", where=where, source=source)
        else:
            kwargs[name] = _coerce(value, hint, key, where.get(key, source))
    return cls(**kwargs)


def _suggest(name: str, names: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(name, names, n=1)
    if close:
        return f"; did you mean '{prefix}{close[0]}'?"
    return f"; known keys{' in ' + prefix.rstrip('.') if prefix else ''}: {', '.join(names)}"


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"null", "none", "~", ""}


def _coerce(value: Any, hint: Any, key: str, where: str) -> Any:
    """`value` as the type `hint` says, or a one-line CotspecError naming `key`."""
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            if type(None) in args:
                return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key, where)
    if origin is Literal:
        if value in args:
            return value
        raise CotspecError(f"{where}: {key} must be one of {', '.join(map(str, args))}; got {value!r}")
    if origin is tuple:
        item = args[0]
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            items = [items]
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, item, key, where) for v in items if v != "")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, (str, int)) and str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        number = _as_float(value)
        if number is not None:
            # inf and nan parse as floats but no key means them: an infinite learning rate trains NaNs.
            if not math.isfinite(number):
                raise CotspecError(f"{where}: {key} must be a finite number, got {value!r}")
            return number
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif hint is Path:
        if isinstance(value, (str, Path)):
            return Path(value).expanduser()
    else:  # pragma: no cover - a field type this loader does not know is a bug, not a user error
        raise TypeError(f"{key}: unsupported config field type {hint!r}")
    raise CotspecError(f"{where}: {key} must be {_type_name(hint)}, got {value!r}")


def _as_float(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _type_name(hint: Any) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}.get(
        hint, str(hint)
    )


# --- writing ---------------------------------------------------------------------------------------


def flatten(config: DistillConfig) -> dict[str, Any]:
    """Dotted key -> plain value (str paths, lists for tuples): what config.yaml holds."""
    flat: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            for sub in fields(value):
                flat[f"{f.name}.{sub.name}"] = _plain(getattr(value, sub.name))
        else:
            flat[f.name] = _plain(value)
    return flat


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_yaml(config: DistillConfig, *, comments: bool = True) -> str:
    """The config as YAML that `load_config` reads back to an equal config; field docs as comments."""
    out: list[str] = []

    def emit(key: str, value: Any, doc: str | None, indent: str) -> None:
        if comments and doc:
            width = 100 - len(indent) - 2
            out.extend(f"{indent}# {line}" for line in textwrap.wrap(doc, width))
        out.append(f"{indent}{key}: {_yaml_scalar(value)}")

    top_docs = field_docs(DistillConfig)
    for f in fields(config):
        value = getattr(config, f.name)
        if is_dataclass(value):
            out.append("")
            if comments and type(value).__doc__:
                out.append(f"# {type(value).__doc__.strip()}")
            out.append(f"{f.name}:")
            docs = field_docs(type(value))
            for sub in fields(value):
                emit(sub.name, _plain(getattr(value, sub.name)), docs.get(sub.name), "  ")
        else:
            emit(f.name, _plain(value), top_docs.get(f.name), "")
    return "\n".join(out).lstrip("\n") + "\n"


def _yaml_scalar(value: Any) -> str:
    # Dumped as a one-item flow list and unwrapped: plain safe_dump of a scalar appends "...".
    return yaml.safe_dump([value], default_flow_style=True, width=10_000).strip()[1:-1]


def help_lines() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every key, for `cotspec train --help`."""
    rows = [("out", "null", field_docs(DistillConfig)["out"])]
    for section, cls in SECTIONS.items():
        docs = field_docs(cls)
        default = cls()
        for f in fields(cls):
            rows.append((f"{section}.{f.name}", _yaml_scalar(_plain(getattr(default, f.name))), docs.get(f.name, "")))
    return rows


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Flattened keys whose values differ, ignoring those a resumed run may change."""
    keys = sorted(set(old) | set(new))
    return [k for k in keys if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)]

