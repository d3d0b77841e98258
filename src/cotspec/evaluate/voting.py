"""Self-consistency: majority vote over the answers extracted from K sampled chains (Wang et al. 2022)."""

from __future__ import annotations

from collections import Counter
from typing import Sequence


def majority_vote(answers: Sequence[str | None]) -> tuple[str | None, dict[str, int]]:
    """Return the most frequent non-None answer and the vote counts.

    Ties go to the answer that appeared first, so the vote is deterministic for a given sample order.
    Chains that committed to no answer do not vote; if none did, the result is None.
    """
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return None, {}
    first_seen = {a: i for i, a in reversed(list(enumerate(answers))) if a is not None}
    winner = max(votes, key=lambda a: (votes[a], -first_seen[a]))
    return winner, dict(votes)
