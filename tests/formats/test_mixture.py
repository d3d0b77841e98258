"""Mixture weights: exact shares, every row kept when upsampling, deterministic per seed."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cotspec.formats.mixture import apportion, mixture_counts, repeat_counts


def test_apportion_is_largest_remainder():
    assert apportion(10, [1, 1, 1]) == [4, 3, 3]  # 3.33 each: the tie goes to the first
    assert apportion(7, [1, 2, 4]) == [1, 2, 4]
    assert apportion(100, [0.5, 0.25, 0.25]) == [50, 25, 25]
    with pytest.raises(ValueError):
        apportion(5, [1, 0])


@settings(max_examples=200, deadline=None)
@given(
    natural=st.lists(st.integers(1, 60), min_size=1, max_size=4),
    raw_weights=st.lists(st.floats(0.01, 100), min_size=4, max_size=4),
    seed=st.integers(0, 2**32),
)
def test_weighted_counts_hit_their_shares(natural, raw_weights, seed):
    formats = [f"f{i}" for i in range(len(natural))]
    weights = dict(zip(formats, raw_weights))
    counts = mixture_counts(dict(zip(formats, natural)), weights, seed)
    total = sum(natural)
    assert sum(sum(c) for c in counts.values()) == total  # the epoch keeps its size
    norm = sum(weights[f] for f in formats)
    for fmt, n in zip(formats, natural):
        rows = sum(counts[fmt])
        assert abs(rows - total * weights[fmt] / norm) < 1  # within one row of w_f / sum(w)
        assert len(counts[fmt]) == n
        assert max(counts[fmt]) - min(counts[fmt]) <= 1  # copies spread evenly over the rows
        if rows >= n:
            assert min(counts[fmt]) >= 1  # upsampling never drops a row


def test_without_weights_every_row_once():
    assert mixture_counts({"a": 3, "b": 2}, None, seed=5) == {"a": [1, 1, 1], "b": [1, 1]}


def test_counts_depend_on_seed_and_only_on_seed():
    natural, weights = {"a": 10, "b": 40}, {"a": 1.0, "b": 1.0}  # a: 25 rows from 10, b: 25 from 40
    first = mixture_counts(natural, weights, seed=1)
    assert first == mixture_counts(natural, weights, seed=1)
    assert first != mixture_counts(natural, weights, seed=2)
    assert sorted(first["a"]) == [2] * 5 + [3] * 5 and sorted(first["b"]) == [0] * 15 + [1] * 25


def test_repeat_counts_subsample_is_a_seeded_subset():
    counts = repeat_counts(8, 3, random.Random(0))
    assert sorted(counts) == [0] * 5 + [1] * 3
    assert counts == repeat_counts(8, 3, random.Random(0))
