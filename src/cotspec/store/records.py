"""What the sample store holds: the run a sample belongs to, a row to write, a row read back."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property

from .teacher_topk import TeacherTopK


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides the distribution a teacher sample is drawn from.

    Samples drawn under different configs are different data: a store holds one config unless the user
    explicitly allows mixing (each row keeps its run id either way). The number of samples per question is
    deliberately not part of it: raising ``n`` from 40 to 60 later just draws samples 40..59.
    """

    teacher: str
    """Model name the teacher was called by (API model id or local model reference)."""
    task: str
    prompt: str
    """Human-readable prompt source, e.g. ``few-shot complex x8`` or a prompt file path (not compared)."""
    prompt_sha256: str
    """Hash of the prompt template (the prompt built for a placeholder question)."""
    temperature: float
    top_p: float
    top_logprobs: int
    max_new_tokens: int
    stop: tuple[str, ...]
    answer_cut: str | None
    """Chains are cut after the first line containing this marker (None: no cut)."""
    seed: int | None = None
    """Seed the run's draws derive from (None: a store written before seeds were recorded). Runs that
    differ only in seed draw from the same distribution: they are separate runs of one store, never a
    conflict."""

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        data = json.loads(text)
        data["stop"] = tuple(data["stop"])
        # A field added later (seed) is absent from older stores' runs: it takes its default.
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def first_difference(self, other: RunConfig, *, ignoring: tuple[str, ...] = ("prompt",)) -> str | None:
        """Name of the first field, other than those in `ignoring` (by default the prompt's description),
        where the two configs differ."""
        for f in fields(self):
            if f.name not in ignoring and getattr(self, f.name) != getattr(other, f.name):
                return f.name
        return None


# The sampling setting(s) (`cotspec.teacher.config.SampleConfig` fields, in backticks as error messages
# name other settings) a user changes to change each field, for error messages.
CONFIG_FIELDS = {
    "teacher": "`model`",
    "task": "`tasks`",
    "prompt_sha256": "`prompt_file`, `exemplars` or `shots`",
    "temperature": "`temperature`",
    "top_p": "`top_p`",
    "top_logprobs": "`top_logprobs`",
    "max_new_tokens": "`max_new_tokens`",
    "stop": "the task's stop sequences",
    "answer_cut": "`answer_marker`",
    "seed": "`seed`",
}


@dataclass
class SampleRow:
    """One teacher completion, scored, ready to be written."""

    question_id: str
    sample_index: int
    run_id: int
    prompt_sha256: str
    text: str
    finish_reason: str
    extracted: str | None
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    generated_tokens: int
    tokens: list[str] | None = None
    """The teacher's tokens of `text`, or None when the teacher returned no logprobs."""
    top_logprobs: list[list[tuple[str, float]]] | None = None
    """Per token of `tokens`, the k most likely (token, logprob), most likely first."""

    def __post_init__(self) -> None:
        if (self.tokens is None) != (self.top_logprobs is None):
            raise ValueError("tokens and top_logprobs are stored together: give both or neither")
        if self.tokens is not None and not (len(self.tokens) == len(self.top_logprobs) == self.completion_tokens):
            raise ValueError(
                f"{self.question_id}#{self.sample_index}: {len(self.tokens)} tokens, "
                f"{len(self.top_logprobs)} top-k positions, completion_tokens={self.completion_tokens}"
            )


@dataclass
class StoredSample:
    """A row read back, joined with its question.

    The teacher's top-k stays arrays (`topk`); `tokens`, `top_tokens` and `top_logprobs` are Python lists
    made from it on first access, for readers that want them (export, tests). The build reads the arrays
    and never makes the lists.
    """

    question_id: str
    sample_index: int
    run_id: int
    question: str
    gold: str
    prompt_sha256: str
    text: str
    finish_reason: str
    extracted: str | None
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    generated_tokens: int
    created_at: float
    has_logprobs: bool
    topk: TeacherTopK | None = field(default=None, repr=False)
    """The decoded blob (ids into the store's token table); None when the teacher returned no logprobs
    for this sample, or when read with ``with_topk=False``."""

    @property
    def tokens(self) -> list[str] | None:
        """The teacher's tokens of `text`; None when `topk` is."""
        return None if self._lists is None else self._lists[0]

    @property
    def top_tokens(self) -> list[list[str]] | None:
        """Per position, the candidate tokens, most likely first (padding removed)."""
        return None if self._lists is None else self._lists[1]

    @property
    def top_logprobs(self) -> list[list[float]] | None:
        """Per position, the candidates' log-probabilities (float32 precision)."""
        return None if self._lists is None else self._lists[2]

    @cached_property
    def _lists(self) -> tuple[list[str], list[list[str]], list[list[float]]] | None:
        return None if self.topk is None else self.topk.lists()
