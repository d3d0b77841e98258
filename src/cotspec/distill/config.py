"""What a distillation run is: one dataclass per config section, loaded from YAML with dotted overrides.

    cotspec train --config configs/distill-gold.yaml --out runs/student train.lr=1e-4 data.limit=200

The sections are the stages of the pipeline: teacher (`cotspec sample`'s settings), data (`cotspec
build`'s, plus tokenization), student, loss, lora, train, eval (`cotspec eval`'s); `cotspec train` reads
data..train, and the teacher and eval sections are for `cotspec run`. Every field's docstring is its
help text (`cotspec train --help` lists them all) and the comment above it in the resolved
``<out>/config.yaml``. Loading, coercion and errors are `cotspec.config`'s: an unknown key, a value of
the wrong type and an out-of-range value are each one `CotspecError` line naming the key (and the file
and line when it came from a file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from .. import config as _config
from ..errors import ConfigError
from ..evaluate.config import EvalConfig
from ..formats.config import BuildSettings
from ..formats.templates import FORMATS
from ..teacher.config import SampleConfig


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
            raise ConfigError("model", "is empty: name a preset, a directory, a .gguf file or a hub id")


@dataclass(frozen=True, kw_only=True)
class DataConfig(BuildSettings):
    """The training rows: a `cotspec build` output, or the build settings to build one into <out>/data."""

    path: Path | None = None
    """A `cotspec build` output directory (`cotspec train --data` sets it). When unset, the run builds one
    into <out>/data from the build keys (gold, store, formats, ...), as `cotspec build` would."""
    max_length: int = 1024
    """Longest row kept, in student tokens: prompt + target for decoder-only students, each side for
    encoder-decoders. Longer rows are dropped (counted in the log), never truncated."""
    cache_dir: Path | None = None
    """Where tokenized datasets are cached, keyed by the rows' content hash and the student tokenizer;
    default <user cache>/cotspec/tokenized."""
    num_proc: int = 1
    """Processes used to tokenize and align rows (once per dataset and tokenizer; then cached)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.path is not None and (self.gold or self.store is not None):
            raise ConfigError("path", "is a finished build; drop `gold` / `store`, or drop it to build here")
        _at_least("max_length", self.max_length, 8)
        _at_least("num_proc", self.num_proc, 1)

    @property
    def builds_here(self) -> bool:
        return self.path is None


@dataclass(frozen=True)
class LossConfig:
    """Sample matching (cross-entropy) or distribution matching (divergence to the teacher's top-k)."""

    objective: Literal["kd", "ce"] = "kd"
    """kd: distribution matching on target tokens that carry the teacher's top-k (aligned to the
    student's tokenizer), mixed with cross-entropy by kd_weight; cross-entropy on all others
    (answer-only formats, gold chains, rows without log-probs, end of sequence). ce: sample matching,
    cross-entropy on every target token; the teacher's top-k is never tokenized, so kd_weight,
    divergence, forward_mode, support, beta and top_k have no effect."""
    kd_weight: float = 1.0
    """kd only. On tokens with teacher top-k: (1 - w) * cross-entropy + w * divergence; tokens without
    are cross-entropy whatever w. 1 is the paper's pure distribution matching; 0 trains as ce does but
    still aligns the teacher's top-k (objective ce skips that work)."""
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
        _at_least("chunk_tokens", self.chunk_tokens, 0)
        if not 0.0 <= self.kd_weight <= 1.0:
            raise ConfigError("kd_weight", f"must be in [0, 1], got {self.kd_weight}")
        if not 0.0 < self.beta < 1.0:
            raise ConfigError("beta", f"must be in (0, 1), got {self.beta}")
        if self.top_k is not None:
            _at_least("top_k", self.top_k, 1)


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
        _at_least("r", self.r, 1)
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), got {self.dropout}")
        if not self.target_modules:
            raise ConfigError("target_modules", "is empty: name modules (q_proj,v_proj) or all-linear")


@dataclass(frozen=True)
class TrainConfig:
    """Optimization, batching, precision, checkpoints and logging."""

    global_batch_size: int | None = 16
    """Rows per optimizer step, over all processes and accumulation steps together; null when
    `gradient_accumulation_steps` sizes the step instead."""
    micro_batch_size: int = 4
    """Rows per forward/backward pass on one process; gradient accumulation makes up the rest."""
    micro_batch_size_per_format: dict[str, int] | None = None
    """Per-format micro-batch sizes, e.g. {in_context_cot: 2, in_context_answer: 10, zero_shot_cot: 8,
    zero_shot_answer: 20} (the paper's); formats left out use `micro_batch_size`. A step of format f
    holds its micro-batch x `gradient_accumulation_steps` x processes rows (needs
    `gradient_accumulation_steps` and per-format `batching`)."""
    gradient_accumulation_steps: int | None = None
    """Micro-batches per process in one optimizer step, instead of deriving them from
    `global_batch_size` (set that to null): a step is micro-batch x this x processes rows. Default:
    global_batch_size / (micro_batch_size x processes)."""
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
        _at_least("micro_batch_size", self.micro_batch_size, 1)
        if self.gradient_accumulation_steps is None:
            if self.global_batch_size is None:
                raise ConfigError("global_batch_size", "is null: set it, or size the step with `gradient_accumulation_steps`")
            _at_least("global_batch_size", self.global_batch_size, 1)
            if self.global_batch_size % self.micro_batch_size:
                raise ConfigError(
                    "global_batch_size",
                    f"{self.global_batch_size} is not a multiple of `micro_batch_size` ({self.micro_batch_size})",
                )
        else:
            _at_least("gradient_accumulation_steps", self.gradient_accumulation_steps, 1)
            if self.global_batch_size is not None:
                raise ConfigError(
                    "gradient_accumulation_steps",
                    f"and `global_batch_size` ({self.global_batch_size}) both size the optimizer step; "
                    "set `global_batch_size` to null",
                )
        self._check_per_format_sizes()
        if not self.lr > 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr}")
        _at_least("warmup_steps", self.warmup_steps, 0)
        if self.weight_decay < 0:
            raise ConfigError("weight_decay", f"must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm < 0:
            raise ConfigError("max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")
        if not self.epochs > 0:
            raise ConfigError("epochs", f"must be > 0, got {self.epochs}")
        if self.max_steps is not None:
            _at_least("max_steps", self.max_steps, 1)
        _at_least("save_every", self.save_every, 1)
        if self.save_total_limit is not None:
            _at_least("save_total_limit", self.save_total_limit, 1)
        _at_least("log_every", self.log_every, 1)
        _at_least("num_workers", self.num_workers, 0)

    def _check_per_format_sizes(self) -> None:
        sizes = self.micro_batch_size_per_format
        if sizes is None:
            return
        if not sizes:
            object.__setattr__(self, "micro_batch_size_per_format", None)
            return
        for name, size in sizes.items():
            if name not in FORMATS:
                raise ConfigError("micro_batch_size_per_format", f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
            _at_least(f"micro_batch_size_per_format.{name}", size, 1)
        if self.gradient_accumulation_steps is None:
            raise ConfigError(
                "micro_batch_size_per_format",
                "needs `gradient_accumulation_steps` (and `global_batch_size` null): a step of each format is "
                "its micro-batch x accumulation x processes rows",
            )
        if self.batching != "per-format":
            raise ConfigError("micro_batch_size_per_format", "needs `batching` per-format: a mixed step has no one format")

    def micro_batch_size_of(self, fmt: str) -> int:
        """Rows per forward/backward pass on one process for a step of format `fmt`."""
        return (self.micro_batch_size_per_format or {}).get(fmt, self.micro_batch_size)

    def accumulation_steps(self, processes: int = 1) -> int:
        """Micro-batches per process in one optimizer step (`training_arguments` checks divisibility)."""
        if self.gradient_accumulation_steps is not None:
            return self.gradient_accumulation_steps
        return max(self.global_batch_size // (self.micro_batch_size * processes), 1)  # type: ignore[operator]

    def rows_per_step(self, fmt: str | None = None, processes: int = 1) -> int:
        """Rows in one optimizer step (of format `fmt`, where per-format sizes are set), over `processes`."""
        if self.gradient_accumulation_steps is None:
            return self.global_batch_size  # type: ignore[return-value]
        size = self.micro_batch_size if fmt is None else self.micro_batch_size_of(fmt)
        return size * self.gradient_accumulation_steps * processes


@dataclass(frozen=True)
class DistillConfig:
    """A run of the pipeline: teacher sampling, the data, the student, its loss, adapters, training, eval."""

    out: Path | None = None
    """Run directory (`cotspec train --out`): config.yaml, checkpoint-<step>/, the final model in model/,
    logs."""
    teacher: SampleConfig | None = None
    """Teacher sampling (`cotspec sample`'s settings), read by `cotspec run`; `cotspec train` ignores it."""
    data: DataConfig = field(default_factory=DataConfig)
    """The training rows (`cotspec build`'s settings, plus tokenization)."""
    student: StudentConfig = field(default_factory=StudentConfig)
    """The model being trained."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Sample matching or distribution matching."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Low-rank adapters instead of full fine-tuning."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimization, batching, precision, checkpoints and logging."""
    eval: EvalConfig | None = None
    """Evaluation of the student (`cotspec eval`'s settings), read by `cotspec run`; `cotspec train`
    ignores it."""

    def require_out(self) -> Path:
        if self.out is None:
            raise ConfigError("out", "is not set: give the run directory")
        return Path(self.out)


SECTIONS: dict[str, type] = {
    "teacher": SampleConfig,
    "data": DataConfig,
    "student": StudentConfig,
    "loss": LossConfig,
    "lora": LoraConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}

# Keys that may change when a run resumes: they decide how long, how often and where, not what is trained.
RESUMABLE_CHANGES = frozenset(
    {
        "out", "data.path", "data.data_dir", "data.cache_dir", "data.num_proc", "train.epochs",
        "train.max_steps", "train.save_every", "train.save_total_limit", "train.resume", "train.log_every",
        "train.report_to", "train.num_workers",
    }
)
PIPELINE_ONLY_SECTIONS = ("select", "report", "resources")
"""Sections of a `cotspec run` config (`cotspec.pipeline.config`) that `cotspec train` skips unread, so one
file serves both commands."""
NOT_TRAINED_SECTIONS = ("teacher", "eval")
"""Sections `cotspec train` does not read: changing them never blocks resuming a training run."""


def _at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(key, f"must be >= {minimum}, got {value}")


def load_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, tuple[Any, str]] | None = None,
) -> DistillConfig:
    """The config of a run: defaults, then the YAML file, then command-line `flags` (dotted key ->
    (value or None, flag name)), then the ``key=value`` overrides, each later one winning
    (`cotspec.config.load`)."""
    return _config.load(DistillConfig, path, overrides, flags, ignore_sections=PIPELINE_ONLY_SECTIONS)


def flatten(config: DistillConfig) -> dict[str, Any]:
    """Dotted key -> plain value (str paths, lists for tuples): what config.yaml holds."""
    return _config.flatten(config)


def to_yaml(config: DistillConfig, *, comments: bool = True) -> str:
    """The config as YAML that `load_config` reads back to an equal config; field docs as comments."""
    return _config.to_yaml(config, comments=comments)


def help_lines() -> list[tuple[str, str, str]]:
    """(dotted key, default, doc) for every key, for `cotspec train --help`."""
    return _config.help_lines(DistillConfig)


def differing_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Flattened keys whose values differ, ignoring those a resumed run may change."""
    return _config.differing_keys(old, new, _resumable)


def _resumable(key: str) -> bool:
    return key in RESUMABLE_CHANGES or key.split(".", 1)[0] in NOT_TRAINED_SECTIONS
