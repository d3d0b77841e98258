"""Self-consistency: majority vote over the answers extracted from K sampled chains (Wang et al. 2022)."""

from __future__ import annotations

from collections import Counter
from typing import Callable, Sequence


def majority_vote(
    answers: Sequence[str | None], key: Callable[[str], str] = str
) -> tuple[str | None, dict[str, int]]:
    """Return the winning answer and the vote counts per key.

    Answers with the same `key` (the task's `vote_key`: `"(B)"` and `"B"`) vote together; the winner is
    the first answer given of the winning key. Ties go to the key that appeared first, so the vote is
    deterministic for a given sample order. Chains that committed to no answer do not vote; if none
    did, the result is None.
    """
    given = [(key(a), a) for a in answers if a is not None]
    if not given:
        return None, {}
    votes = Counter(k for k, _ in given)
    first_seen: dict[str, tuple[int, str]] = {}
    for position, (k, answer) in enumerate(given):
        first_seen.setdefault(k, (position, answer))
    winner = max(votes, key=lambda k: (votes[k], -first_seen[k][0]))
    return first_seen[winner][1], dict(votes)
