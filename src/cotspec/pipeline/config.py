"""What a `cotspec run` is: the train YAML's sections plus the pipeline's own (teacher lifecycle, select,
eval, report, resources), one frozen dataclass loaded by `cotspec.config`.

    config = load_pipeline_config(Path("configs/demo-cpu.yaml"), ["train.max_steps=4"])

Sections: ``teacher`` (`cotspec sample`'s settings plus the server lifecycle; null: no teacher, gold
chains or an existing store only), ``data``, ``student``, ``loss``, ``lora``, ``train`` (the very
dataclasses `cotspec train` reads), ``select`` (the dev sets and the checkpoint-selection criterion),
``eval`` (the test sets), ``report`` and ``resources``. Field docstrings are the help text and the
comments of ``<run>/config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

from .. import config as _config
from ..distill.config import DataConfig, LoraConfig, LossConfig, StudentConfig, TrainConfig
from ..errors import ConfigError
from ..evaluate.config import DTYPES
from ..tasks.base import Mode
from ..teacher.config import SampleConfig

TEST_TASKS = ("gsm8k", "multiarith", "asdiv", "svamp", "bbh")
"""The paper's Table 1 benchmarks."""


@dataclass(frozen=True, kw_only=True)
class TeacherConfig(SampleConfig):
    """The teacher: `cotspec sample`'s settings, where the chains go (<run>/teacher/samples.db) and who serves it."""

    model: str = "smollm2-135m-instruct"
    """The teacher: with `server` embedded a .gguf file or the embedded preset; with `base_urls` the model
    name the servers serve; with `backend` transformers what to load in-process."""
    store: Path | None = None
    """Where the chains go; default <run>/teacher/samples.db. Set it to share one teacher's chains between
    runs (the paper samples once and trains four student sizes on the same chains); a forced redo of the
    sample stage never deletes a store outside the run directory."""
    server: Literal["embedded", "none"] = "none"
    """embedded: start the local llama.cpp server on `model` for the sample stage and stop it after (also on
    failure and Ctrl-C); none: use the servers at `base_urls`, or the in-process transformers backend."""
    server_threads: int | None = None
    """Embedded server: CPU threads (default: llama.cpp's, half the cores)."""
    server_n_ctx: int = 2048
    """Embedded server: context window in tokens (prompt + chain)."""
    server_engine: Literal["llama-cpp-python", "llama-server"] = "llama-cpp-python"
    """Embedded server: llama-cpp-python's server (one request at a time), or llama.cpp's C++ llama-server
    (`make install-teacher-server`; parallel slots, top-k computed natively: ~7x the sampling speed with
    top-5 log-probs on the embedded model)."""
    server_parallel: int | None = None
    """Embedded llama-server: slots decoding together (default 8)."""
    reachability_timeout_s: float = 5.0
    """Seconds each of `base_urls` has to answer GET /models before the run starts (an unreachable
    teacher is refused before any expensive stage)."""

    def __post_init__(self) -> None:
        if self.server == "embedded":
            if self.base_urls:
                raise ConfigError("base_urls", "are running servers, but `server` is embedded; give one of them")
            if self.backend not in (None, "openai"):
                raise ConfigError("backend", "must be openai (or unset) with the embedded server")
            object.__setattr__(self, "backend", "openai")
        super().__post_init__()
        if self.server_threads is not None and self.server_threads < 1:
            raise ConfigError("server_threads", f"must be >= 1, got {self.server_threads}")
        if self.server_parallel is not None and self.server_parallel < 1:
            raise ConfigError("server_parallel", f"must be >= 1, got {self.server_parallel}")
        if self.server_n_ctx < 16:
            raise ConfigError("server_n_ctx", f"must be >= 16, got {self.server_n_ctx}")
        if self.reachability_timeout_s <= 0:
            raise ConfigError("reachability_timeout_s", f"must be > 0, got {self.reachability_timeout_s}")

    def for_store(self, store: Path, **changes: Any) -> SampleConfig:
        """The `SampleConfig` `run_sampling` takes: these settings, writing to `store`."""
        from dataclasses import fields

        values = {f.name: getattr(self, f.name) for f in fields(SampleConfig) if f.init}
        values.update(store=store, **changes)
        if self.server == "embedded" and "base_urls" not in changes:
            values["backend"] = None
        return SampleConfig(**values)


@dataclass(frozen=True)
class SelectConfig:
    """Checkpoint selection: every saved checkpoint is evaluated on the dev sets and one is picked."""

    in_distribution: str = "gsm8k-dev"
    """In-distribution dev task: gsm8k-dev, the paper's 200 held-out GSM8K training questions (never
    trained on)."""
    in_distribution_size: int | None = None
    """Use a seeded subset of this many in-distribution dev questions (default: all 200)."""
    ood: str | None = "svamp"
    """Out-of-distribution dev task, a slice of another math task's test split (multiarith, asdiv, svamp);
    null: select by the in-distribution dev set only. The slice is left out of that task's test
    evaluation, and selection.json records its ids."""
    ood_size: int = 100
    """Questions in the OOD dev slice: a seeded random subset (seed `seed`) of the task's test split, kept
    in file order."""
    seed: int = 0
    """Seed of the dev subsets: the slice is random.Random('<seed>:<task>').sample of the question
    indices, so the same seed always gives the same questions."""
    modes: tuple[Mode, ...] = (Mode.ZERO_SHOT,)
    """Prompt modes the dev sets are evaluated in, comma-separated: zero-shot, few-shot; the dev accuracy
    of a checkpoint is the mean over them."""
    criterion: Literal["in_distribution", "ood", "mean"] = "mean"
    """Which dev accuracy picks the checkpoint: in_distribution, ood, or their mean (ties go to the
    earlier step). What every criterion would have picked is recorded."""
    test_all_picks: bool = False
    """Evaluate on the test sets every checkpoint some criterion picked, not just the selected one."""

    def __post_init__(self) -> None:
        if not self.modes:
            raise ConfigError("modes", "is empty: give zero-shot and/or few-shot")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError("modes", "names a mode twice")
        if self.in_distribution_size is not None and self.in_distribution_size < 1:
            raise ConfigError("in_distribution_size", f"must be >= 1, got {self.in_distribution_size}")
        if self.ood_size < 1:
            raise ConfigError("ood_size", f"must be >= 1, got {self.ood_size}")
        if self.ood is None and self.criterion != "in_distribution":
            raise ConfigError("criterion", f"{self.criterion} needs an OOD dev set; set `ood` or use in_distribution")
        if self.ood is not None and self.ood in (self.in_distribution, "gsm8k-dev"):
            raise ConfigError("ood", f"{self.ood} is the in-distribution dev set; name another math task")

    @property
    def dev_tasks(self) -> tuple[str, ...]:
        return (self.in_distribution,) + ((self.ood,) if self.ood else ())


@dataclass(frozen=True)
class EvalSection:
    """How the student is evaluated (dev and test): the test sets, their subsets, modes and decoding."""

    tasks: tuple[str, ...] = TEST_TASKS
    """Test tasks, comma-separated: gsm8k, multiarith, asdiv, svamp, bbh (the 27 BIG-Bench Hard tasks)."""
    limit: int | None = None
    """Evaluate a seeded random subset of this many questions per task (per bbh:<task> for bbh), in
    file order; default: every question."""
    bbh_limit: int | None = None
    """The subset size per BIG-Bench Hard task (27 of them) when it should differ from `limit`."""
    limits: dict[str, int] | None = None
    """Per-task subset sizes that override `limit`, e.g. {gsm8k: 500, multiarith: 300}."""
    seed: int = 0
    """Seed of the test subsets (random.Random('<seed>:<task>')) and of the decoding."""
    modes: tuple[Mode, ...] = (Mode.FEW_SHOT, Mode.ZERO_SHOT)
    """Prompt modes of the test evaluations, comma-separated: few-shot (in-context) and/or zero-shot."""
    exemplars: str | None = None
    """Few-shot exemplar set (`original`, `complex` or a file); default the task's."""
    shots: int | None = None
    """Few-shot exemplars kept (default: the task's, 4 for math)."""
    max_new_tokens: int = 256
    """Most generated tokens per answer."""
    batch_size: int = 16
    """Prompts decoded together; more is faster until memory runs out."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Weights/compute dtype of the evaluated models."""
    base: bool = True
    """Also evaluate the untouched student (the before of the before/after table)."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ConfigError("tasks", "is empty: name at least one task")
        if not self.modes:
            raise ConfigError("modes", "is empty: give few-shot and/or zero-shot")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError("modes", "names a mode twice")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", f"must be >= 1, got {self.limit}")
        if self.bbh_limit is not None and self.bbh_limit < 1:
            raise ConfigError("bbh_limit", f"must be >= 1, got {self.bbh_limit}")
        for task, size in (self.limits or {}).items():
            if task not in self.tasks or task == "bbh":
                raise ConfigError(f"limits.{task}", f"is not one of the math tasks in `tasks` ({', '.join(self.tasks)}); bbh uses `bbh_limit`")
            if size < 1:
                raise ConfigError(f"limits.{task}", f"must be >= 1, got {size}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"must be one of {', '.join(DTYPES)}")
        if self.shots is not None and self.shots < 0:
            raise ConfigError("shots", f"must be >= 0, got {self.shots}")

    def limit_of(self, task: str) -> int | None:
        """The subset size of one task (a bbh:<name> task takes `bbh_limit`, then `limit`)."""
        if task.startswith("bbh:"):
            return self.bbh_limit or self.limit
        return (self.limits or {}).get(task, self.limit)


@dataclass(frozen=True)
class ReportConfig:
    """The last stages: the report (<run>/report/) and the selected model with its card (<run>/model/)."""

    enabled: bool = True
    """Write <run>/report/ (report.md, report.html, PNGs) at the end of the run."""
    publish: bool = True
    """Copy the selected checkpoint to <run>/model/ (a plain save_pretrained directory) with a model card."""


@dataclass(frozen=True)
class ResourcesConfig:
    """The machines training runs on; only `--dry-run`'s memory estimate reads it."""

    gpus: int = 1
    """Processes / GPUs of the training run (accelerate launch)."""
    zero_stage: int = 0
    """DeepSpeed ZeRO stage (0-3) or FSDP full sharding as 3: what is sharded over the GPUs."""

    def __post_init__(self) -> None:
        if self.gpus < 1:
            raise ConfigError("gpus", f"must be >= 1, got {self.gpus}")
        if self.zero_stage not in (0, 1, 2, 3):
            raise ConfigError("zero_stage", f"must be 0, 1, 2 or 3, got {self.zero_stage}")


@dataclass(frozen=True)
class PipelineConfig:
    """A `cotspec run`: teacher sampling, training data, student training, checkpoint selection, evaluation, report."""

    data_dir: Path | None = field(default=None, compare=False)
    """Benchmark files for every stage; default $COTSPEC_DATA_DIR, else the user cache dir."""
    teacher: TeacherConfig | None = None
    """Teacher sampling (`cotspec sample`'s settings); null: no teacher (gold chains or an existing
    `data.store`)."""
    data: DataConfig = field(default_factory=DataConfig)
    """The training rows (`cotspec build`'s settings): built into <run>/data from <run>/teacher/samples.db
    when there is a teacher, and/or GSM8K's gold chains."""
    student: StudentConfig = field(default_factory=StudentConfig)
    """The model being trained."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Sample matching or distribution matching."""
    lora: LoraConfig = field(default_factory=LoraConfig)
    """Low-rank adapters instead of full fine-tuning."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Optimization, batching, precision, checkpoints (all kept until selection) and logging."""
    select: SelectConfig = field(default_factory=SelectConfig)
    """Checkpoint selection on the dev sets."""
    eval: EvalSection = field(default_factory=EvalSection)
    """Evaluation on the test sets (and decoding for the dev sets)."""
    report: ReportConfig = field(default_factory=ReportConfig)
    """The report and the published model."""
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    """Where training runs (for the dry-run's memory estimate)."""

    def __post_init__(self) -> None:
        if self.data.path is not None:
            raise ConfigError("data.path", "is set, but the run builds its own data into <run>/data; drop it")
        if self.teacher is not None and self.data.store is not None and self.data.store != self.teacher.store:
            raise ConfigError(
                "data.store", "differs from the teacher's store (teacher.store, default <run>/teacher/samples.db), "
                "which the build reads; drop data.store"
            )
        if self.teacher is None and self.data.store is None and not self.data.gold:
            raise ConfigError("data.gold", "nothing to train on: add a teacher section, set data.gold: true or give data.store")
        if self.teacher is not None and self.teacher.task != "gsm8k":
            raise ConfigError("teacher.tasks", f"the training formats are built from GSM8K; sample gsm8k, not {self.teacher.task}")


def load_pipeline_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, tuple[Any, str]] | None = None,
) -> PipelineConfig:
    """Defaults, then the YAML file, then `flags`, then ``key=value`` overrides (`cotspec.config.load`)."""
    return _config.load(PipelineConfig, path, overrides, flags)


def to_yaml(config: PipelineConfig) -> str:
    return _config.to_yaml(config)


def help_lines() -> list[tuple[str, str, str]]:
    return _config.help_lines(PipelineConfig)
