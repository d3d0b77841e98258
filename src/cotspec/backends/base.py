"""The generation interface every backend implements.

A backend turns prompts into completions and streams them back as they exist, so callers can persist
each one at once: an evaluation or a teacher run killed half-way keeps everything already generated.
It offers two views of the same work (see `Backend`):

- ``generate(prompts, params)``: all ``params.n`` completions of a prompt at once, by prompt index
  (evaluation, self-consistency);
- ``generate_requests(requests, params)``: one result per explicitly numbered sample, so a resumed
  teacher run asks for exactly the samples still missing (`cotspec sample`).

A backend implements whichever is native to it and inherits the other from `GenerateFromRequests` or
`RequestsFromGenerate`. Seeds of sampled completions come from `sample_seed`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable, Hashable, Iterable, Iterator, Protocol, Sequence, cast

from ..errors import ConfigError, CotspecError


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
            raise ConfigError("max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ConfigError("temperature", f"must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError("top_p", f"must be in (0, 1], got {self.top_p}")
        if self.n < 1:
            raise ConfigError("n", f"must be >= 1, got {self.n}")
        if self.top_logprobs < 0:
            raise ConfigError("top_logprobs", f"must be >= 0, got {self.top_logprobs}")

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


@dataclass(frozen=True)
class SampleRequest:
    """Samples wanted for one prompt."""

    key: Hashable
    """The caller's id for the prompt (e.g. a question id); results carry it back."""
    prompt: str
    sample_ids: tuple[int, ...]
    """Which samples of this prompt to generate, e.g. the ones missing from a store. A sample id names a
    draw: with a fixed seed, the same (prompt, sample id) gives the same completion in any request."""

    def __post_init__(self) -> None:
        if not self.sample_ids or len(set(self.sample_ids)) != len(self.sample_ids):
            raise ValueError(f"sample_ids of {self.key!r} must be non-empty and distinct")


@dataclass(frozen=True)
class SampleResult:
    """One generated sample: `completion` is sample `sample_id` of the request named `key`."""

    key: Hashable
    sample_id: int
    completion: Completion


SEED_MODULUS = 2**31 - 1
"""Seeds are below this: every server and torch generator accepts a non-negative 31-bit seed."""


def sample_seed(seed: int, prompt: str, sample_id: int) -> int:
    """The seed of one sampled completion: sample `sample_id` of `prompt` in a run seeded with `seed`.

    ``int.from_bytes(blake2b(f"{seed}\\0{sample_id}\\0{prompt}", digest_size=8), "big") % (2**31 - 1)``
    (UTF-8 bytes). It depends on nothing else (not on batching, request order, or which other samples a
    run asks for), so a sample is reproducible however a run was split or resumed, and a resumed run's
    new sample ids draw new chains even with the same seed.
    """
    digest = hashlib.blake2b(f"{seed}\0{sample_id}\0{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SEED_MODULUS


@dataclass(frozen=True)
class BackendSettings:
    """Everything a registered backend may be built from; each backend reads the fields it needs.

    The eval and sample configs each map their flags onto this (``backend_settings``), and
    `cotspec.backends.create_backend` hands it to the backend's ``from_settings``. Values are checked
    by the backend that uses them, naming the flag.
    """

    model: str | None = None
    """transformers: what to load (preset name, .gguf file, directory or hub id). openai: the model name
    the servers serve (None: ask the first server)."""
    base_urls: tuple[str, ...] = ()
    """openai: API root(s) of the server fleet."""
    api_key_env: str | None = None
    """openai: environment variable holding the API key."""
    concurrency: int = 8
    """openai: HTTP requests in flight at once."""
    dtype: str = "auto"
    """transformers: weights/compute dtype (auto, bfloat16, float32)."""
    batch_size: int = 16
    """transformers: rows (prompt x sample) decoded together."""
    trust_remote_code: bool = False
    """transformers: allow model repositories to run their own Python code."""


class Backend(Protocol):
    """Generates completions for prompts; see the module docstring for the two entry points.

    Classes listed in `cotspec.backends.BACKENDS` also provide ``from_settings(settings: BackendSettings)
    -> Backend`` as a classmethod (`RegisteredBackend`).
    """

    name: str

    def generate(
        self,
        prompts: Sequence[str],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        """Yield (index into prompts, its `params.n` completions), in any order, each index once.

        With ``params.seed`` set the output is reproducible for the same call, and distinct prompts of
        one call draw independently.
        """
        ...

    def generate_requests(
        self,
        requests: Iterable[SampleRequest],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[SampleResult]:
        """Yield one `SampleResult` per requested (key, sample id), in any order, each exactly once, as
        soon as it exists. ``params.n`` is ignored: the sample ids say how many. Distinct sample ids of a
        prompt are distinct draws, also for the same ``params.seed``."""
        ...

    def close(self) -> None: ...


class RegisteredBackend(Protocol):
    """What a `cotspec.backends.BACKENDS` entry names: a class that builds its backend from settings."""

    def from_settings(self, settings: BackendSettings) -> Backend: ...


class GenerateFromRequests:
    """`Backend.generate` for a backend whose native entry point is ``generate_requests``.

    Prompt ``i`` becomes the request ``SampleRequest(i, prompt, (0, ..., n - 1))``; its completions are
    yielded together once the last of them arrives, in sample-id order.
    """

    def generate(
        self: Backend,
        prompts: Sequence[str],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[tuple[int, list[Completion]]]:
        sample_ids = tuple(range(params.n))
        requests = [SampleRequest(index, prompt, sample_ids) for index, prompt in enumerate(prompts)]
        received: dict[int, dict[int, Completion]] = {}
        for result in self.generate_requests(requests, params, on_tokens):
            index = cast(int, result.key)
            got = received.setdefault(index, {})
            got[result.sample_id] = result.completion
            if len(got) == params.n:
                del received[index]
                yield index, [got[sample_id] for sample_id in sample_ids]


class RequestsFromGenerate:
    """`Backend.generate_requests` for a backend that only implements ``generate``.

    One ``generate`` call per sample id, over the prompts that want it, with ``n=1`` and the seed
    ``sample_seed(params.seed, "", sample_id)`` (None when ``params.seed`` is: the backend draws its
    own): every sample id draws under its own seed, so a resumed run's new sample ids are new draws,
    and the backend's ``generate`` tells the prompts of a call apart. Unlike a native implementation,
    a completion may depend on which other prompts share its call.
    """

    def generate_requests(
        self: Backend,
        requests: Iterable[SampleRequest],
        params: SamplingParams,
        on_tokens: ProgressCallback | None = None,
    ) -> Iterator[SampleResult]:
        wanting: dict[int, list[SampleRequest]] = {}
        for request in requests:
            for sample_id in request.sample_ids:
                wanting.setdefault(sample_id, []).append(request)
        for sample_id in sorted(wanting):
            group = wanting[sample_id]
            seed = None if params.seed is None else sample_seed(params.seed, "", sample_id)
            call = replace(params, n=1, seed=seed)
            for index, (completion,) in self.generate([r.prompt for r in group], call, on_tokens):
                yield SampleResult(group[index].key, sample_id, completion)
