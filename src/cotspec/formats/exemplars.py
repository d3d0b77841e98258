"""Seeded draws of in-context exemplars from the training questions."""

from __future__ import annotations

import random
from typing import Sequence

from ..tasks.base import Example


class ExemplarSampler:
    """Draws `shots` exemplars per row from `pool`, never the row's own question.

    Each row's draw depends only on (seed, row id): rows keep their exemplars when --limit, the formats
    or the store's other questions change, and a repeated row (a mixture copy has its own id) gets fresh
    exemplars instead of an exact duplicate. The caller keeps the gsm8k-dev questions out of `pool`.
    """

    def __init__(self, pool: Sequence[Example], shots: int, seed: int):
        if len(pool) < shots + 1:
            raise ValueError(f"an exemplar pool of {len(pool)} questions cannot give {shots} exemplars plus the question itself")
        self.pool = list(pool)
        self.shots = shots
        self.seed = seed

    def draw(self, row_id: str, question_id: str) -> list[Example]:
        # random.Random(str) seeds from the string's SHA-512, independent of PYTHONHASHSEED.
        rng = random.Random(f"cotspec-exemplars:{self.seed}:{row_id}")
        # One spare pick stands in when the question itself is drawn.
        picks = (self.pool[i] for i in rng.sample(range(len(self.pool)), self.shots + 1))
        return [e for e in picks if e.id != question_id][: self.shots]
