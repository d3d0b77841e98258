"""What an evaluation run is: one dataclass, checked on construction, written next to the results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..backends import BackendSettings, check_backend_name
from ..errors import CotspecError
from ..tasks.base import Mode, PromptSpec


@dataclass(frozen=True)
class EvalConfig:
    """Settings of `cotspec eval`. Each field is one flag; the checks name the flag."""

    model: str
    """Model reference: preset name, local directory, .gguf file or hub id; with --backend openai, the
    model name the server knows."""
    tasks: tuple[str, ...]
    """Task names (`gsm8k`, `multiarith`, `asdiv`, `svamp`, `bbh`, `bbh:<task>`, `jsonl:<path>`)."""
    out: Path
    """Run directory: predictions/<task>.jsonl, summary.json, run.json."""
    mode: Mode = Mode.FEW_SHOT
    """few-shot (in-context exemplars) or zero-shot ("Let's think step by step")."""
    answer_only: bool = False
    """Prompt for the answer alone instead of a chain of thought."""
    exemplars: str | None = None
    """Few-shot exemplar set: `original` (Wei et al. 8-shot), `complex`, or a file in the same layout."""
    shots: int | None = None
    """Exemplars kept from the start of the set (default: the task's, 4 for math)."""
    split: str | None = None
    """Dataset split (default: each task's test split)."""
    limit: int | None = None
    """Evaluate the first N examples of each task."""
    self_consistency: int = 1
    """K > 1 samples K chains at --sc-temperature and takes the majority answer."""
    sc_temperature: float = 0.7
    """Sampling temperature for self-consistency."""
    max_new_tokens: int = 256
    """Upper bound on generated tokens per answer."""
    batch_size: int = 32
    """Prompts per forward batch (transformers backend)."""
    backend: str = "transformers"
    """`transformers` (in-process) or `openai` (any OpenAI-compatible server)."""
    base_urls: tuple[str, ...] = ()
    """Server URLs for --backend openai (several spread the load)."""
    api_key_env: str | None = None
    """Environment variable holding the API key (never stored). Unset: $OPENAI_API_KEY if set, else no
    key; a variable named here must be set."""
    concurrency: int = 8
    """Requests in flight at once (openai backend)."""
    dtype: str = "auto"
    """Weights/compute dtype for the transformers backend: auto, bfloat16, float32."""
    trust_remote_code: bool = False
    """Allow model repositories to run their own Python code."""
    seed: int = 0
    """Seed for sampling (self-consistency)."""
    data_dir: Path | None = field(default=None, compare=False)
    """Benchmark files; default $COTSPEC_DATA_DIR, else the user cache dir."""

    def __post_init__(self) -> None:
        if not self.tasks:
            raise CotspecError("--tasks is empty: name at least one task, e.g. --tasks gsm8k")
        if self.limit is not None and self.limit < 1:
            raise CotspecError(f"--limit must be >= 1, got {self.limit}")
        if self.self_consistency < 1:
            raise CotspecError(f"--self-consistency must be >= 1, got {self.self_consistency}")
        if self.self_consistency > 1 and self.sc_temperature <= 0:
            raise CotspecError("--sc-temperature must be > 0 when --self-consistency > 1")
        if self.max_new_tokens < 1:
            raise CotspecError(f"--max-new-tokens must be >= 1, got {self.max_new_tokens}")
        if self.batch_size < 1:
            raise CotspecError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.concurrency < 1:
            raise CotspecError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.shots is not None and self.shots < 0:
            raise CotspecError(f"--shots must be >= 0, got {self.shots}")
        check_backend_name(self.backend)
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise CotspecError(f"--dtype must be auto, bfloat16 or float32, got {self.dtype!r}")

    @property
    def backend_settings(self) -> BackendSettings:
        """The flags `cotspec.backends.create_backend` builds the `backend` from; it checks them."""
        return BackendSettings(
            model=self.model,
            base_urls=self.base_urls,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            dtype=self.dtype,
            batch_size=self.batch_size,
            trust_remote_code=self.trust_remote_code,
        )

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
