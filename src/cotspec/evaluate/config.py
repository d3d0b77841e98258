"""What an evaluation run is: one dataclass, checked on construction, written next to the results.

`GenerationSettings` (which model generates, on which backend, with what resources) is shared with
`cotspec.teacher.config.SampleConfig`: `cotspec eval` and `cotspec sample` spell, document and default
those settings identically because they are the same fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from ..backends import BACKENDS, BackendSettings
from ..errors import ConfigError
from ..tasks.base import Mode, PromptSpec

DTYPES = ("auto", "bfloat16", "float32")


@dataclass(frozen=True, kw_only=True)
class GenerationSettings:
    """The model that generates and how it runs: shared by `cotspec eval` and `cotspec sample`."""

    model: str
    """The model that generates: with the transformers backend what to load (a preset name, a local
    directory, a .gguf file or a hub id); with the openai backend the model name the server(s) serve."""
    tasks: tuple[str, ...] = ("gsm8k",)
    """Task names, comma-separated: gsm8k, multiarith, asdiv, svamp, bbh, bbh:<task>, jsonl:<path>
    (`cotspec sample` takes one)."""
    limit: int | None = None
    """Use only the first N questions of each task (for sampling: after leaving out the gsm8k-dev
    questions)."""
    max_new_tokens: int = 256
    """Most generated tokens per chain; a chain that hits it ends with finish reason `length`."""
    seed: int = 0
    """Seed of the sampled generations: each one's seed derives from it, its prompt and its index, so a
    re-run or a resumed run draws the same chains."""
    backend: str | None = None
    """Who generates: `transformers` (in-process) or `openai` (OpenAI-compatible servers); default openai
    when `base_urls` are given, else transformers."""
    base_urls: tuple[str, ...] = ()
    """OpenAI-compatible server(s), e.g. http://127.0.0.1:8000/v1; several spread the load."""
    api_key_env: str | None = None
    """Environment variable holding the API key (never stored). Unset: $OPENAI_API_KEY if set, else no
    key; a variable named here must be set."""
    concurrency: int = 8
    """Requests in flight at once, over all servers (openai backend)."""
    batch_size: int = 16
    """Rows (prompt x sample) decoded together (transformers backend); more is faster until memory runs
    out."""
    dtype: Literal["auto", "bfloat16", "float32"] = "auto"
    """Weights/compute dtype (transformers backend)."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code."""
    data_dir: Path | None = field(default=None, compare=False)
    """Benchmark files; default $COTSPEC_DATA_DIR, else the user cache dir."""

    def __post_init__(self) -> None:
        if not self.model:
            raise ConfigError("model", "is empty: name a preset, a directory, a .gguf file, a hub id or a served model")
        if not self.tasks:
            raise ConfigError("tasks", "is empty: name at least one task, e.g. gsm8k")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", f"must be >= 1, got {self.limit}")
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        if self.backend is None:
            object.__setattr__(self, "backend", "openai" if self.base_urls else "transformers")
        if self.backend not in BACKENDS:
            raise ConfigError("backend", f"unknown backend '{self.backend}'; choose one of {', '.join(sorted(BACKENDS))}")
        if self.base_urls and self.backend == "transformers":
            raise ConfigError("base_urls", "are servers, but the transformers backend runs the model in-process; drop them or set `backend` to openai")
        if self.concurrency < 1:
            raise ConfigError("concurrency", f"must be >= 1, got {self.concurrency}")
        if self.batch_size < 1:
            raise ConfigError("batch_size", f"must be >= 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", f"must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def backend_settings(self) -> BackendSettings:
        """The settings `cotspec.backends.create_backend` builds the `backend` from; it checks them."""
        return BackendSettings(
            model=self.model,
            base_urls=self.base_urls,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            dtype=self.dtype,
            batch_size=self.batch_size,
            trust_remote_code=self.trust_remote_code,
        )


@dataclass(frozen=True, kw_only=True)
class EvalConfig(GenerationSettings):
    """Settings of `cotspec eval`: each field is a flag (and a key of the pipeline's eval section)."""

    out: Path
    """Run directory: predictions/<task>.jsonl, summary.json, run.json."""
    mode: Mode = Mode.ZERO_SHOT
    """zero-shot ("Let's think step by step"; how students are trained and evaluated) or few-shot
    (in-context exemplars)."""
    answer_only: bool = False
    """Prompt for the answer alone instead of a chain of thought."""
    exemplars: str | None = None
    """Few-shot exemplar set: `original` (Wei et al. 8-shot), `complex`, or a file in the same layout."""
    shots: int | None = None
    """Exemplars kept from the start of the set (default: the task's, 4 for math)."""
    split: str | None = None
    """Dataset split (default: each task's test split)."""
    self_consistency: int = 1
    """K > 1 samples K chains at `sc_temperature` and takes the majority answer."""
    sc_temperature: float = 0.7
    """Sampling temperature for self-consistency."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.self_consistency < 1:
            raise ConfigError("self_consistency", f"must be >= 1, got {self.self_consistency}")
        if self.self_consistency > 1 and self.sc_temperature <= 0:
            raise ConfigError("sc_temperature", "must be > 0 when `self_consistency` > 1")
        if self.shots is not None and self.shots < 0:
            raise ConfigError("shots", f"must be >= 0, got {self.shots}")

    @property
    def prompt_spec(self) -> PromptSpec:
        return PromptSpec(mode=self.mode, cot=not self.answer_only, exemplars=self.exemplars, shots=self.shots)

    def identity(self) -> dict[str, object]:
        """The settings that change what a prediction is; a run directory holds one identity only.

        Limits, batch size, concurrency, the task list and where data lives may change between resumes.
        """
        keep = (
            "model", "mode", "answer_only", "exemplars", "shots", "split", "self_consistency",
            "sc_temperature", "max_new_tokens", "backend", "dtype", "seed",
        )
        values = asdict(self)
        return {k: (values[k].value if isinstance(values[k], Mode) else values[k]) for k in keep}
