"""In-context exemplars: seeded, never the question itself, stable per row id."""

from __future__ import annotations

import pytest

from cotspec.formats.exemplars import ExemplarSampler
from cotspec.tasks.base import Example


def _pool(n: int) -> list[Example]:
    return [Example(f"gsm8k/train/{i}", f"q{i}", str(i), rationale=f"r{i}") for i in range(n)]


def test_draw_never_returns_the_question_even_from_a_tiny_pool():
    sampler = ExemplarSampler(_pool(5), shots=4, seed=0)
    for i in range(5):
        for row in range(30):
            drawn = sampler.draw(f"row{row}", f"gsm8k/train/{i}")
            assert len(drawn) == 4 and len({e.id for e in drawn}) == 4
            assert f"gsm8k/train/{i}" not in {e.id for e in drawn}


def test_draw_is_a_function_of_seed_and_row_id():
    pool = _pool(100)
    a, b = ExemplarSampler(pool, 4, seed=0), ExemplarSampler(pool, 4, seed=0)
    assert a.draw("x", "gsm8k/train/0") == b.draw("x", "gsm8k/train/0")
    assert a.draw("x", "gsm8k/train/0") != a.draw("x#1", "gsm8k/train/0")
    assert a.draw("x", "gsm8k/train/0") != ExemplarSampler(pool, 4, seed=1).draw("x", "gsm8k/train/0")


def test_pool_too_small():
    with pytest.raises(ValueError, match="cannot give 4 exemplars"):
        ExemplarSampler(_pool(4), shots=4, seed=0)
