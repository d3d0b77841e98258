"""What a teacher sampling run is: one dataclass, checked on construction; each field is a flag.

The model, backend and resource settings are `cotspec.evaluate.config.GenerationSettings`, shared with
`cotspec eval`: ``--model`` names the model that generates in both commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..evaluate.config import GenerationSettings

PAPER_EXEMPLARS = {"gsm8k": ("complex", 8)}
"""Fu et al. (2023) prompt the teacher with the 8 "complex" GSM8K exemplars."""


@dataclass(frozen=True, kw_only=True)
class SampleConfig(GenerationSettings):
    """Settings of `cotspec sample`. Defaults are the paper's (40 chains per question at T=0.5, top-5)."""

    store: Path
    """SQLite sample store to write (created if missing); re-running the same command resumes it."""
    split: str = "train"
    """Dataset split to sample."""
    n: int = 40
    """Chains per question. Raising it later draws only the extra ones."""
    temperature: float = 0.5
    """Sampling temperature of the teacher."""
    top_p: float = 1.0
    """Nucleus sampling mass (1 = off)."""
    top_logprobs: int = 5
    """Candidates per generated token whose log-probabilities are stored (0 = none)."""
    exemplars: str | None = None
    """Few-shot exemplar set the task knows (gsm8k: `complex` by default, as the paper; `original`)."""
    shots: int | None = None
    """Exemplars kept from the start of the set (gsm8k default 8, as the paper)."""
    prompt_file: Path | None = None
    """Few-shot prompt file in the layout of gsm8k_prompts/prompt_complex.txt, instead of `exemplars`."""
    answer_marker: str = "The answer is"
    """A chain is cut after the first line containing this (case-insensitive); "" keeps whole chains."""
    include_dev: bool = False
    """Also sample the 200 gsm8k-dev questions (held out for model selection by default)."""
    allow_mixed_runs: bool = False
    """Add samples to a store that holds samples drawn with other settings (teacher, temperature, prompt)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.tasks) != 1:
            raise ConfigError("tasks", f"names {len(self.tasks)} tasks ({','.join(self.tasks)}); a store holds one: sample each task into its own store")
        if self.n < 1:
            raise ConfigError("n", f"must be >= 1, got {self.n}")
        if self.temperature <= 0:
            raise ConfigError("temperature", f"must be > 0 to draw different chains, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.top_logprobs < 0:
            raise ConfigError("top_logprobs", f"must be >= 0, got {self.top_logprobs}")
        if self.shots is not None and self.shots < 1:
            raise ConfigError("shots", f"must be >= 1, got {self.shots}")
        if self.prompt_file is not None and self.exemplars is not None:
            raise ConfigError("prompt_file", "and `exemplars` both choose the exemplars: give one")
        if self.prompt_file is not None and not Path(self.prompt_file).is_file():
            raise ConfigError("prompt_file", f"{self.prompt_file}: no such file")
        if "\n" in self.answer_marker:
            raise ConfigError("answer_marker", "must fit on one line")

    @property
    def task(self) -> str:
        """The one task sampled."""
        return self.tasks[0]

    @property
    def teacher(self) -> str:
        """The teacher's name as the store records it: `model`."""
        return self.model

    @property
    def exemplar_choice(self) -> tuple[str | None, int | None]:
        """(exemplars, shots) to build the prompt with: the settings, else the paper's for the task."""
        if self.prompt_file is not None:
            return str(self.prompt_file), self.shots
        default_set, default_shots = PAPER_EXEMPLARS.get(self.task, (None, None))
        exemplars = self.exemplars if self.exemplars is not None else default_set
        shots = self.shots if self.shots is not None else (default_shots if exemplars == default_set else None)
        return exemplars, shots
