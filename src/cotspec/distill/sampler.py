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

Per-format micro-batch sizes (the paper's recipes: e.g. 2 in-context CoT rows but 20 zero-shot answer
rows per micro-batch) make the groups of each format their own size (`group_sizes`: that format's
micro-batch x accumulation x processes). The DataLoader then cannot cut the stream at one batch size:
`MicroBatchSampler` yields the micro-batches themselves, each group cut into `micro_batches_per_group`
equal ones; accelerate deals them out round-robin, so each process gets its accumulation's worth of
micro-batches of every group, all of one format and of that format's size.
"""

from __future__ import annotations

from typing import Iterator, Mapping, Sequence

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
        group_sizes: Mapping[str, int] | None = None,
    ):
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        if group_sizes and formats is None:
            raise ValueError("group_sizes are per format; mixed batching has one group size")
        if group_sizes and min(group_sizes.values()) < 1:
            raise ValueError(f"group sizes must be >= 1, got {dict(group_sizes)}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.formats = None if formats is None else np.asarray(formats)
        self.group_size = group_size
        self.group_sizes = dict(group_sizes or {})
        self.seed = seed
        self.group_by_length = group_by_length
        self.megabatch_groups = megabatch_groups
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _pools(self) -> list[tuple[int, np.ndarray]]:
        """(group size, dataset indices) of each pool: one per format, or one for all rows."""
        if self.formats is None:
            return [(self.group_size, np.arange(len(self.lengths)))]
        return [
            (self.group_sizes.get(name, self.group_size), np.flatnonzero(self.formats == name))
            for name in sorted(set(self.formats.tolist()))
        ]

    def groups(self) -> list[np.ndarray]:
        """This epoch's groups, in training order; each is its format's group size of dataset indices."""
        rng = np.random.default_rng([self.seed, self.epoch])
        groups: list[np.ndarray] = []
        for size, pool in self._pools():
            order = rng.permutation(pool)
            shortfall = -len(order) % size
            if shortfall:
                order = np.concatenate([order, rng.choice(pool, size=shortfall, replace=len(pool) < shortfall)])
            if self.group_by_length:
                span = size * self.megabatch_groups
                order = np.concatenate(
                    [mega[np.argsort(-self.lengths[mega], kind="stable")] for mega in np.split(order, range(span, len(order), span))]
                )
            groups.extend(np.split(order, len(order) // size))
        return [groups[i] for i in rng.permutation(len(groups))]

    def num_groups(self) -> int:
        """Groups (optimizer steps) in one epoch."""
        return sum(-(-len(pool) // size) for size, pool in self._pools())

    def __iter__(self) -> Iterator[int]:
        for group in self.groups():
            yield from group.tolist()

    def __len__(self) -> int:
        return sum(-(-len(pool) // size) * size for size, pool in self._pools())


class MicroBatchSampler(Sampler[list[int]]):
    """The micro-batches of a `GroupedLengthSampler`: each group (one optimizer step over all processes)
    cut into `micro_batches_per_group` (accumulation x processes) equal micro-batches, in order.

    For a DataLoader's `batch_sampler`. It has no `batch_size` attribute on purpose: accelerate's
    `BatchSamplerShard` then passes micro-batches of every size through (round-robin over processes)
    instead of holding back those unlike the first. `sampler` is the wrapped sampler, where accelerate
    and the Trainer look for `set_epoch`.
    """

    def __init__(self, sampler: GroupedLengthSampler, micro_batches_per_group: int):
        if micro_batches_per_group < 1:
            raise ValueError(f"micro_batches_per_group must be >= 1, got {micro_batches_per_group}")
        self.sampler = sampler
        self.micro_batches_per_group = micro_batches_per_group
        self.drop_last = False

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for group in self.sampler.groups():
            if len(group) % self.micro_batches_per_group:
                raise ValueError(
                    f"a group of {len(group)} rows does not split into {self.micro_batches_per_group} equal micro-batches"
                )
            for micro in np.split(group, self.micro_batches_per_group):
                yield micro.tolist()

    def __len__(self) -> int:
        return self.sampler.num_groups() * self.micro_batches_per_group
