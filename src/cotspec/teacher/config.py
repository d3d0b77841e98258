"""What a teacher sampling run is: one dataclass, checked on construction; each field is a flag."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import BackendSettings
from ..errors import CotspecError

PAPER_EXEMPLARS = {"gsm8k": ("complex", 8)}
"""Fu et al. (2023) prompt the teacher with the 8 "complex" GSM8K exemplars."""


@dataclass(frozen=True)
class SampleConfig:
    """Settings of `cotspec sample`. Defaults are the paper's (40 chains per question at T=0.5, top-5)."""

    store: Path
    """SQLite sample store to write (created if missing); re-running the same command resumes it."""
    task: str = "gsm8k"
    """Task whose questions are sampled (any name `cotspec eval --tasks` takes)."""
    split: str = "train"
    """Dataset split to sample."""
    limit: int | None = None
    """Sample only the first N questions of the split (after leaving out the dev questions)."""
    n: int = 40
    """Chains per question. Raising it later draws only the extra ones."""
    temperature: float = 0.5
    """Sampling temperature of the teacher."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    top_logprobs: int = 5
    """Candidates per generated token whose log-probabilities are stored (0 = none)."""
    max_new_tokens: int = 256
    """Most tokens per chain; a chain that hits it is stored with finish reason `length`."""
    base_urls: tuple[str, ...] = ()
    """OpenAI-compatible teacher server(s), e.g. http://127.0.0.1:8080/v1; repeat the flag for a fleet."""
    model: str | None = None
    """Model name the server(s) serve; recorded in the store as the teacher."""
    api_key_env: str | None = None
    """Environment variable holding the API key (never stored). Unset: $OPENAI_API_KEY if set, else no
    key; a variable named here must be set."""
    concurrency: int = 8
    """HTTP requests in flight at once, over all --base-url servers."""
    teacher: str | None = None
    """Sample in-process with transformers instead: a preset name, local directory, .gguf file or hub id."""
    dtype: str = "auto"
    """Weights/compute dtype for --teacher: auto, bfloat16, float32."""
    batch_size: int = 16
    """Rows (question x chain) decoded together with --teacher; more is faster until memory runs out."""
    seed: int | None = None
    """Seed for sampling: request seeds derive from it, the prompt and the chain index (unset: random)."""
    exemplars: str | None = None
    """Few-shot exemplar set the task knows (gsm8k: `complex` by default, as the paper; `original`)."""
    shots: int | None = None
    """Exemplars kept from the start of the set (gsm8k default 8, as the paper)."""
    prompt_file: Path | None = None
    """Few-shot prompt file in the layout of gsm8k_prompts/prompt_complex.txt, instead of --exemplars."""
    answer_marker: str = "The answer is"
    """A chain is cut after the first line containing this (case-insensitive); "" keeps whole chains."""
    include_dev: bool = False
    """Also sample the 200 gsm8k-dev questions (held out for model selection by default)."""
    allow_mixed_runs: bool = False
    """Add samples to a store that holds samples drawn with other settings (teacher, temperature, prompt)."""
    data_dir: Path | None = field(default=None, compare=False)
    """Benchmark files; default $COTSPEC_DATA_DIR, else the user cache dir."""

    def __post_init__(self) -> None:
        if bool(self.base_urls) == bool(self.teacher):
            raise CotspecError(
                "give the teacher either as --base-url URL --model NAME (a server) "
                "or as --teacher REF (in-process), not both"
                if self.teacher
                else "no teacher: pass --base-url URL --model NAME for a server, or --teacher REF to run one in-process"
            )
        if self.base_urls and not self.model:
            raise CotspecError("--model is required with --base-url: the store records which teacher wrote each chain")
        if self.limit is not None and self.limit < 1:
            raise CotspecError(f"--limit must be >= 1, got {self.limit}")
        if self.n < 1:
            raise CotspecError(f"--n must be >= 1, got {self.n}")
        if self.temperature <= 0:
            raise CotspecError(f"--temperature must be > 0 to draw different chains, got {self.temperature}")
        if self.concurrency < 1:
            raise CotspecError(f"--concurrency must be >= 1, got {self.concurrency}")
        if self.batch_size < 1:
            raise CotspecError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.shots is not None and self.shots < 1:
            raise CotspecError(f"--shots must be >= 1, got {self.shots}")
        if self.prompt_file is not None and self.exemplars is not None:
            raise CotspecError("--prompt-file and --exemplars both choose the exemplars: pass one")
        if self.prompt_file is not None and not Path(self.prompt_file).is_file():
            raise CotspecError(f"--prompt-file {self.prompt_file}: no such file")
        if self.dtype not in ("auto", "bfloat16", "float32"):
            raise CotspecError(f"--dtype must be auto, bfloat16 or float32, got {self.dtype!r}")
        if "\n" in self.answer_marker:
            raise CotspecError("--answer-marker must fit on one line")

    @property
    def backend(self) -> str:
        """The registered backend that samples: ``openai`` for --base-url servers, ``transformers`` for
        an in-process --teacher."""
        return "openai" if self.base_urls else "transformers"

    @property
    def backend_settings(self) -> BackendSettings:
        """The flags `cotspec.backends.create_backend` builds the teacher's backend from."""
        return BackendSettings(
            model=self.teacher or self.model,  # one of the two is set (checked above)
            base_urls=self.base_urls,
            api_key_env=self.api_key_env,
            concurrency=self.concurrency,
            dtype=self.dtype,
            batch_size=self.batch_size,
        )

    @property
    def exemplar_choice(self) -> tuple[str | None, int | None]:
        """(exemplars, shots) to build the prompt with: the flags, else the paper's for the task."""
        if self.prompt_file is not None:
            return str(self.prompt_file), self.shots
        default_set, default_shots = PAPER_EXEMPLARS.get(self.task, (None, None))
        exemplars = self.exemplars if self.exemplars is not None else default_set
        shots = self.shots if self.shots is not None else (default_shots if exemplars == default_set else None)
        return exemplars, shots
