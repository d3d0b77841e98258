"""Data order: whole optimizer steps of one format, rows of like length together, deterministic."""

from __future__ import annotations

import numpy as np

from cotspec.distill.sampler import GroupedLengthSampler


def rows(seed: int = 0):
    rng = np.random.default_rng(seed)
    formats = ["zero_shot_cot"] * 70 + ["zero_shot_answer"] * 45 + ["in_context_cot"] * 13
    lengths = [int(x) for x in rng.integers(20, 400, len(formats))]
    return lengths, formats


def padding_fraction(lengths, order, micro: int) -> float:
    padded = real = 0
    for start in range(0, len(order), micro):
        batch = [lengths[i] for i in order[start : start + micro]]
        padded += max(batch) * len(batch)
        real += sum(batch)
    return 1 - real / padded


def test_per_format_steps_are_homogeneous_full_and_cover_every_row():
    lengths, formats = rows()
    sampler = GroupedLengthSampler(lengths, formats, group_size=8, seed=3)
    order = list(sampler)
    assert len(order) == len(sampler) == 8 * (9 + 6 + 2)  # each format rounded up to whole steps
    steps = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert all(len({formats[i] for i in step}) == 1 for step in steps)
    assert set(order) == set(range(len(lengths)))  # the fill repeats rows, it never drops one
    assert len({formats[step[0]] for step in steps[:6]}) > 1  # formats interleave over the epoch


def test_mixed_batching_ignores_formats():
    lengths, formats = rows()
    sampler = GroupedLengthSampler(lengths, None, group_size=8, seed=3)
    order = list(sampler)
    assert len(order) == 8 * 16 and set(order) == set(range(len(lengths)))
    steps = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert any(len({formats[i] for i in step}) > 1 for step in steps)


def test_length_grouping_removes_most_padding():
    lengths, formats = rows()
    grouped = list(GroupedLengthSampler(lengths, formats, group_size=8, seed=1))
    shuffled = list(GroupedLengthSampler(lengths, formats, group_size=8, seed=1, group_by_length=False))
    assert padding_fraction(lengths, grouped, micro=4) < 0.1 < 0.3 < padding_fraction(lengths, shuffled, micro=4)


def test_order_is_a_function_of_seed_and_epoch():
    lengths, formats = rows()
    a = GroupedLengthSampler(lengths, formats, group_size=8, seed=5)
    b = GroupedLengthSampler(lengths, formats, group_size=8, seed=5)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)
    assert list(GroupedLengthSampler(lengths, formats, group_size=8, seed=6)) != list(b)
