"""Summary numbers of a sample store: yield per question, pass@k, distinct chains, token counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one question with n samples of which c are correct (Chen et al., 2021).

    pass@k = 1 - C(n-c, k) / C(n, k), the chance that k samples drawn without replacement from the n
    contain a correct one. Computed as a running product: C(n, k) overflows floats for n in the hundreds.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


@dataclass(frozen=True)
class QuestionCounts:
    """Per-question aggregates, as the store's SQL computes them."""

    question_id: str
    samples: int
    correct: int
    distinct: int
    distinct_correct: int
    prompt_tokens: int
    generated_tokens: int
    kept_tokens: int
    without_logprobs: int


@dataclass(frozen=True)
class StoreStats:
    questions: int
    samples: int
    correct: int
    yield_mean: float
    """Mean number of correct chains per question."""
    yield_min: int
    yield_max: int
    share_with_correct: float
    """Share of questions with at least one correct chain (what survives into the training data)."""
    pass_at_1: float
    k: int
    """The k of `pass_at_k`: the largest number of samples any question has (the run's --n)."""
    pass_at_k: float
    questions_at_k: int
    """Questions with at least k samples: pass@k averages over these only."""
    distinct: int
    distinct_correct: int
    prompt_tokens: int
    generated_tokens: int
    """Completion tokens the teacher produced (what a run costs)."""
    kept_tokens: int
    """Completion tokens kept in the stored chains (after the answer-line cut)."""
    without_logprobs: int
    finish_reasons: dict[str, int] = field(default_factory=dict)


def summarize(per_question: list[QuestionCounts], finish_reasons: dict[str, int]) -> StoreStats:
    """Store-wide numbers from per-question counts (questions without samples are not in the list)."""
    if not per_question:
        return StoreStats(0, 0, 0, 0.0, 0, 0, 0.0, 0.0, 0, 0.0, 0, 0, 0, 0, 0, 0, 0, dict(finish_reasons))
    yields = [q.correct for q in per_question]
    k = max(q.samples for q in per_question)
    at_k = [q for q in per_question if q.samples >= k]
    return StoreStats(
        questions=len(per_question),
        samples=sum(q.samples for q in per_question),
        correct=sum(yields),
        yield_mean=fmean(yields),
        yield_min=min(yields),
        yield_max=max(yields),
        share_with_correct=fmean(1.0 if c > 0 else 0.0 for c in yields),
        # pass@1 is unbiased with any number of samples; pass@k only with at least k.
        pass_at_1=fmean(pass_at_k(q.samples, q.correct, 1) for q in per_question),
        k=k,
        pass_at_k=fmean(pass_at_k(q.samples, q.correct, k) for q in at_k),
        questions_at_k=len(at_k),
        distinct=sum(q.distinct for q in per_question),
        distinct_correct=sum(q.distinct_correct for q in per_question),
        prompt_tokens=sum(q.prompt_tokens for q in per_question),
        generated_tokens=sum(q.generated_tokens for q in per_question),
        kept_tokens=sum(q.kept_tokens for q in per_question),
        without_logprobs=sum(q.without_logprobs for q in per_question),
        finish_reasons=dict(finish_reasons),
    )
