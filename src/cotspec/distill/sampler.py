"""The order rows are trained in: whole optimizer steps of one format (or mixed), rows of like length
together.

The DataLoader cuts the index stream into micro-batches and accelerate deals consecutive micro-batches
out to the processes, so one optimizer step consumes `group_size` = global batch consecutive indices.
This sampler yields the stream as such groups:

* ``per-format`` (Fu et al.'s setting): a group holds rows of one format; the last incomplete group of
  a format is filled with other rows of the same format drawn at random (so a few rows appear twice in
  an epoch and every step stays one format and full size);
* ``mixed``: one pool; the last incomplete group is filled the same way.

With length grouping, each format's shuffled rows are cut into megabatches of `megabatch_groups`
groups, sorted by length within the megabatch (longest first) and cut into groups; group order is then
shuffled. Rows in a group, hence in a micro-batch, have similar lengths, and the order is still random
at the scale of an epoch (transformers' LengthGroupedSampler does the same with one pool).

Deterministic in (seed, epoch): a resumed run skips exactly the micro-batches it already trained on.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class GroupedLengthSampler(Sampler[int]):
    def __init__(
        self,
        lengths: Sequence[int],
        formats: Sequence[str] | None,
        group_size: int,
        *,
        seed: int = 0,
        group_by_length: bool = True,
        megabatch_groups: int = 50,
    ):
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.formats = None if formats is None else np.asarray(formats)
        self.group_size = group_size
        self.seed = seed
        self.group_by_length = group_by_length
        self.megabatch_groups = megabatch_groups
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pools(self) -> list[np.ndarray]:
        if self.formats is None:
            return [np.arange(len(self.lengths))]
        return [np.flatnonzero(self.formats == name) for name in sorted(set(self.formats.tolist()))]

    def groups(self) -> list[np.ndarray]:
        """This epoch's groups, in training order; each is `group_size` dataset indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[np.ndarray] = []
        for pool in self._pools():
            order = rng.permutation(pool)
            shortfall = -len(order) % self.group_size
            if shortfall:
                order = np.concatenate([order, rng.choice(pool, size=shortfall, replace=len(pool) < shortfall)])
            if self.group_by_length:
                span = self.group_size * self.megabatch_groups
                order = np.concatenate(
                    [mega[np.argsort(-self.lengths[mega], kind="stable")] for mega in np.split(order, range(span, len(order), span))]
                )
            groups.extend(np.split(order, len(order) // self.group_size))
        return [groups[i] for i in rng.permutation(len(groups))]

    def __iter__(self) -> Iterator[int]:
        for group in self.groups():
            yield from group.tolist()

    def __len__(self) -> int:
        return sum(-(-len(pool) // self.group_size) * self.group_size for pool in self._pools())
