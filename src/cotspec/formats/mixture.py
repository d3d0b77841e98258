"""Mixture weights -> how many times each built row is written. Pure and deterministic.

Without weights every row is written once, so a format's share is its natural count (one row per
question for the answer-only formats, one per chain for the CoT formats).

With weights ``w`` the total number of rows stays the natural total ``T = sum(n_f)`` and format ``f``
gets exactly ``t_f`` rows, ``t_f`` being ``T * w_f / sum(w)`` rounded by largest remainder (so the
``t_f`` sum to ``T`` and each is within one row of its exact share). Format ``f``'s ``n_f`` rows are put
in a seeded random order and, with ``q, r = divmod(t_f, n_f)``, every row is written ``q`` times and
the first ``r`` rows of that order once more. ``t_f >= n_f`` upsamples (every row at least once,
copies spread evenly); ``t_f < n_f`` subsamples (``q = 0``: a seeded random subset of ``t_f`` rows).
"""

from __future__ import annotations

import math
import random
from typing import Mapping, Sequence


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integers proportional to `weights` that sum to `total` (largest remainder; ties go to the first)."""
    if total < 0 or not weights or any(not (w > 0 and math.isfinite(w)) for w in weights):
        raise ValueError(f"need total >= 0 and positive finite weights, got {total}, {list(weights)}")
    norm = math.fsum(weights)
    exact = [total * w / norm for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def repeat_counts(n_rows: int, target: int, rng: random.Random) -> list[int]:
    """How often each of `n_rows` rows is written so that exactly `target` rows come out."""
    if n_rows == 0:
        if target:
            raise ValueError(f"cannot write {target} rows from none")
        return []
    base, extra = divmod(target, n_rows)
    counts = [base] * n_rows
    for i in rng.sample(range(n_rows), extra):
        counts[i] += 1
    return counts


def mixture_counts(
    natural: Mapping[str, int], weights: Mapping[str, float] | None, seed: int
) -> dict[str, list[int]]:
    """Per format, the write count of each of its rows (in build order); see the module docstring."""
    if weights is None:
        return {fmt: [1] * n for fmt, n in natural.items()}
    formats = list(natural)
    targets = apportion(sum(natural.values()), [weights[f] for f in formats])
    # One generator per format, keyed by name: adding or dropping a format leaves the others' draws alone.
    return {
        fmt: repeat_counts(natural[fmt], target, random.Random(f"cotspec-mixture:{seed}:{fmt}"))
        for fmt, target in zip(formats, targets)
    }
