"""The generation interface every backend implements.

A backend turns prompts into completions. It streams results back as (prompt index, completions) so
callers can persist each one as soon as it exists: an evaluation or a teacher run killed half-way keeps
everything already generated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Protocol, Sequence

from ..errors import CotspecError


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings, with the same meaning on every backend (OpenAI completions semantics)."""

    max_new_tokens: int = 256
    """Upper bound on generated tokens per completion."""
    temperature: float = 0.0
    """0 means greedy decoding."""
    top_p: float = 1.0
    n: int = 1
    """Completions per prompt."""
    stop: tuple[str, ...] = ()
    """Generation ends at the first occurrence of any of these; the stop text is not returned."""
    top_logprobs: int = 0
    """Return the k most likely tokens with their log-probabilities at every generated position."""
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise CotspecError(f"--max-tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise CotspecError(f"--temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise CotspecError(f"--top-p must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise CotspecError(f"--n must be >= 1, got {self.n}")
        if self.top_logprobs < 0:
            raise CotspecError(f"--top-logprobs must be >= 0, got {self.top_logprobs}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass
class Completion:
    """One generated continuation of one prompt."""

    text: str
    """Generated text, cut before the first stop sequence."""
    finish_reason: str
    """``stop`` (stop sequence or end-of-sequence token) or ``length`` (hit max_new_tokens)."""
    prompt_tokens: int
    completion_tokens: int
    tokens: list[str] | None = None
    """The generated tokens as strings (only when top_logprobs > 0)."""
    top_logprobs: list[list[tuple[str, float]]] | None = field(default=None, repr=False)
    """Per generated token, the k (token, logprob) candidates, most likely first (when requested)."""


ProgressCallback = Callable[[int], None]
"""Called with the number of newly generated tokens, for throughput display."""


class Backend(Protocol):
    """Generates completions for prompts."""

    name: str

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (index into prompts, its `params.n` completions), in any order, each index once."""
        ...

    def close(self) -> None: ...
